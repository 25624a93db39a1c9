"""Zero-shot: the base model, never trained. Its scores are row 0 of every accuracy matrix."""

from __future__ import annotations

from torch import nn

from citkit.methods.base import Method, register_method


@register_method("zero-shot")
class ZeroShot(Method):
    """No adapter, no training: every row of the matrix is the base model's score."""

    trains = False

    def attach(self, model: nn.Module) -> nn.Module:
        return model
