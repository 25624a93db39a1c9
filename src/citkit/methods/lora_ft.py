"""LoRA-FT: one LoRA trained on each task in turn (sequential fine-tuning, the lower bound)."""

from __future__ import annotations

from citkit.methods.base import Method, register_method


@register_method("lora-ft")
class LoRAFineTuning(Method):
    """One adapter, trained on every task in order; nothing protects earlier tasks.

    All behaviour is the base class's: one LoRA attached before the first task."""

