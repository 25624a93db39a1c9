"""Continual-learning methods, each a small class registered by name.

Importing this package registers every built-in method.
"""

# registration on import
from citkit.methods import (  # noqa: F401
    disco,
    eproj,
    ewc,
    hide_llava,
    joint,
    lora_ft,
    lwf,
    mas,
    moelora,
    olora,
    replay,
    zero_shot,
)
from citkit.methods.base import METHODS, Method, MethodConfig, register_method

__all__ = ["METHODS", "Method", "MethodConfig", "register_method"]
