"""MoELoRA (Chen et al. 2024, CoIN): LoRA split into experts mixed per token by a dense router."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from citkit.errors import ConfigError
from citkit.methods.base import Method, register_method
from citkit.methods.moelora.layers import add_moelora
from citkit.models.families import projector


@dataclass(frozen=True)
class MoELoRAConfig:
    """How the adapter's rank is split into experts."""

    num_experts: int = field(default=2, metadata={"help": (
        "E: experts per adapted layer, each of rank adapter.rank / E (must divide it). CoIN's scripts use "
        "2 experts with r = 128.")})

    def __post_init__(self) -> None:
        if self.num_experts < 1:
            raise ConfigError(f"moelora num_experts must be >= 1, got {self.num_experts}")


@register_method("moelora")
class MoELoRA(Method):
    """Every adapted linear layer gets E LoRA experts and a softmax router; all train on every task.

    There is no per-task structure and no penalty: whatever protection MoELoRA gives comes from the
    router sending different inputs to different experts. The router is dense (every expert runs
    for every token, no top-k), as in CoIN. Built as citkit's own module (`layers.MoELoRALinear`)
    rather than a peft tuner, targeting the same layers as citkit's peft LoRA."""

    config_class = MoELoRAConfig

    def attach(self, model: nn.Module) -> nn.Module:
        if self.adapter.rank % self.config.num_experts:
            raise ConfigError(f"moelora: adapter.rank={self.adapter.rank} is not divisible by "
                              f"num_experts={self.config.num_experts}; set adapter.rank to a multiple of it")
        add_moelora(model, self.adapter, self.config.num_experts)
        if self.adapter.train_projector:
            projector(model).requires_grad_(True)
        return model
