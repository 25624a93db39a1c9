"""HiDe-LLaVA: task-specific expansion in the top layer(s), task-general fusion below (Guo et al., ACL 2025)."""

from citkit.methods.hide_llava.config import HiDeConfig
from citkit.methods.hide_llava.layers import HiDeLinear
from citkit.methods.hide_llava.method import HiDeLLaVA

__all__ = ["HiDeConfig", "HiDeLLaVA", "HiDeLinear"]
