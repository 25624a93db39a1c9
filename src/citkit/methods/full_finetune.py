"""Full fine-tuning: every parameter trains except those under the named frozen modules; no adapter.

Not a continual method of the registry (a 7B model would need a copy per task); the tiny model's
pretraining and its vision warm-up train through the engine with it.
"""

from __future__ import annotations

from torch import nn

from citkit.methods.base import Method


class FullFineTune(Method):
    """Train every parameter whose name contains none of `frozen`."""

    def __init__(self, frozen: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.frozen = frozen

    def attach(self, model: nn.Module) -> nn.Module:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(not any(part in name for part in self.frozen))
        return model
