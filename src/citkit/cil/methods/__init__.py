"""Class-incremental methods on a ViT, each registered by name in `CIL_METHODS` (on import)."""

from citkit.cil.methods import desire, inflora, olora, regularized, sdlora, simple  # noqa: F401  (registration)
from citkit.cil.methods.base import CIL_METHODS, CILMethod, Phase, register_cil_method

__all__ = ["CIL_METHODS", "CILMethod", "Phase", "register_cil_method"]
