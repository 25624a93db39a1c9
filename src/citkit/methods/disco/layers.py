"""DISCO's layer: a frozen linear layer plus K LoRA subspaces (A_k, B_k).

    training (slot a):     y = W x + s B_a A_a dropout(x)
    inference (weights w): y = W x + s sum_k w_k B_k A_k x      w: (batch, K), one row per sample

Each subspace is its own pair of parameters (`lora_A.k`, `lora_B.k`), so a client sends and the server
averages one slot by name, and only the slot being trained has requires_grad.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.models.lora import target_regex

HALF = (torch.float16, torch.bfloat16)


class DiscoLinear(nn.Module):
    """Wraps one `nn.Linear` (kept frozen as `base_layer`)."""

    def __init__(self, base_layer: nn.Linear, num_subspaces: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.scaling = alpha / rank
        weight = base_layer.weight
        kwargs = {"device": weight.device, "dtype": torch.float32 if weight.dtype in HALF else weight.dtype}
        self.lora_A = nn.ParameterList(
            [nn.Parameter(torch.empty(rank, base_layer.in_features, **kwargs)) for _ in range(num_subspaces)])
        self.lora_B = nn.ParameterList(
            [nn.Parameter(torch.zeros(base_layer.out_features, rank, **kwargs)) for _ in range(num_subspaces)])
        for a in self.lora_A:  # peft's LoRA init: A Kaiming-uniform, B zero, so every slot starts as W
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.active: int | None = None          # the slot being trained
        self.routing: Tensor | None = None      # (batch, K) inference weights

    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)
        if self.routing is not None:
            a = torch.stack(list(self.lora_A))  # (K, r, in)
            b = torch.stack(list(self.lora_B))  # (K, out, r)
            hidden = torch.einsum("...i,kri->...kr", x.to(a.dtype), a)  # (batch, seq, K, r)
            weights = self.routing.to(a.dtype)  # (batch, K)
            weights = weights.view(weights.shape[0], *([1] * (hidden.dim() - 3)), weights.shape[1], 1)
            delta = torch.einsum("...kr,kor->...o", hidden * weights, b)  # (batch, seq, out)
            return result + (self.scaling * delta).to(result.dtype)
        if self.active is not None:
            a, b = self.lora_A[self.active], self.lora_B[self.active]
            delta = self.dropout(x.to(a.dtype)) @ a.T @ b.T  # (..., out)
            return result + (self.scaling * delta).to(result.dtype)
        return result


def add_disco(model: nn.Module, modules: tuple[str, ...], num_subspaces: int, rank: int, alpha: float,
              dropout: float) -> list[DiscoLinear]:
    """Replace the language model's target linear layers by `DiscoLinear`; return them."""
    pattern = re.compile(target_regex(model, modules))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(n)]
    if not names:
        raise ConfigError(f"disco: no linear layer matches {pattern.pattern!r}; check method.target_modules")
    layers = []
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = DiscoLinear(getattr(parent, child), num_subspaces, rank, alpha, dropout)
        setattr(parent, child, layer)
        layers.append(layer)
    return layers
