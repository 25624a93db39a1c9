"""The MoELoRA layer: a frozen linear layer plus E low-rank experts mixed by a dense softmax router.

    y = W x + s * sum_e softmax(R x)_e B_e A_e dropout(x),   A_e: (r/E, in), B_e: (out, r/E)

The E experts together hold the rank r of one LoRA, so MoELoRA trains as many expert parameters as
LoRA of rank r, plus one router of E x in_features per adapted layer.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.models.lora import AdapterConfig, target_regex

HALF = (torch.float16, torch.bfloat16)


class MoELoRALinear(nn.Module):
    """Wraps one `nn.Linear`; the wrapped layer stays frozen as `base_layer`.

    Experts are kept as two stacked parameters (`lora_A`: (E, r/E, in), `lora_B`: (E, out, r/E)) so
    the forward pass is two matrix products whatever E is. Adapter weights are float32 when the base
    layer is half precision (as peft does), so small updates are not lost to rounding."""

    def __init__(self, base_layer: nn.Linear, rank: int, num_experts: int, alpha: float,
                 dropout: float) -> None:
        super().__init__()
        if rank % num_experts:
            raise ConfigError(f"moelora: adapter.rank={rank} is not divisible by num_experts={num_experts}; "
                              "choose a rank that is a multiple of the expert count")
        self.base_layer = base_layer
        self.num_experts = num_experts
        self.expert_rank = rank // num_experts
        self.scaling = alpha / rank  # s = alpha / r, as for one LoRA of the full rank
        weight = base_layer.weight
        kwargs = {"device": weight.device, "dtype": torch.float32 if weight.dtype in HALF else weight.dtype}
        in_features, out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = nn.Parameter(torch.empty(num_experts, self.expert_rank, in_features, **kwargs))
        self.lora_B = nn.Parameter(torch.zeros(num_experts, out_features, self.expert_rank, **kwargs))
        self.router = nn.Linear(in_features, num_experts, bias=False, **kwargs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for expert in self.lora_A:  # peft's LoRA init: A Kaiming-uniform, B zero, so the layer starts as W
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))
        self._router_sink: dict[str, Tensor] | None = None
        self._name = ""

    def router_weights(self, x: Tensor) -> Tensor:
        """softmax(R x) over experts: (..., in_features) -> (..., num_experts), summing to 1 per token."""
        return torch.softmax(self.router(x.to(self.router.weight.dtype)), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)
        weights = self.router_weights(x)  # (..., E)
        if self._router_sink is not None:
            self._router_sink[self._name] = weights.detach()
        a = self.lora_A.reshape(-1, self.lora_A.shape[-1])  # (E * r_e, in)
        hidden = self.dropout(x.to(a.dtype)) @ a.T  # (..., E * r_e)
        hidden = hidden.unflatten(-1, (self.num_experts, self.expert_rank))  # (..., E, r_e)
        hidden = hidden * weights.unsqueeze(-1)
        b = self.lora_B.permute(1, 0, 2).reshape(self.lora_B.shape[1], -1)  # (out, E * r_e)
        delta = hidden.flatten(-2) @ b.T  # (..., out)
        return result + (self.scaling * delta).to(result.dtype)


def add_moelora(model: nn.Module, adapter: AdapterConfig, num_experts: int) -> list[str]:
    """Replace the language model's target linear layers by `MoELoRALinear`; return their names.

    Targets are chosen with the same pattern as citkit's peft LoRA (`models.lora.target_regex`), so
    MoELoRA and LoRA adapt the same layers."""
    pattern = re.compile(target_regex(model, adapter.target_modules))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(n)]
    if not names:
        raise ConfigError(f"moelora: no linear layer matches {pattern.pattern!r}; "
                          "check adapter.target_modules")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = MoELoRALinear(getattr(parent, child), adapter.rank, num_experts, adapter.alpha,
                              adapter.dropout)
        layer._name = name
        setattr(parent, child, layer)
    return names


def moelora_layers(model: nn.Module) -> Iterator[tuple[str, MoELoRALinear]]:
    return ((n, m) for n, m in model.named_modules() if isinstance(m, MoELoRALinear))


@contextlib.contextmanager
def record_router_weights(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Inside the context, each forward pass stores every layer's router weights, by layer name.

    Yields the dict that the layers fill: name -> (batch, seq, num_experts) of the last forward pass."""
    sink: dict[str, Tensor] = {}
    layers = [layer for _, layer in moelora_layers(model)]
    for layer in layers:
        layer._router_sink = sink
    try:
        yield sink
    finally:
        for layer in layers:
            layer._router_sink = None
