"""Continual-learning methods, each a small class registered by name.

Importing this package registers every built-in method.
"""

from citkit.methods import joint, lora_ft, zero_shot  # noqa: F401  (registration on import)
from citkit.methods import ewc, lwf, mas, replay  # noqa: F401  (registration on import)
from citkit.methods import eproj, moelora, olora  # noqa: F401  (registration on import)
from citkit.methods import hide_llava  # noqa: F401  (registration on import)
from citkit.methods.base import METHODS, Method, MethodConfig, register_method

__all__ = ["METHODS", "Method", "MethodConfig", "register_method"]
