"""HiDe-LLaVA's model side: a linear layer with one LoRA expert per task, routed or fused.

`HiDeLinear` wraps one target linear layer of the language model (citkit's own module, no peft):

- while task t trains, it computes W h + s B_t A_t h (the task's expert alone on the frozen base);
- afterwards, an *expanded* layer computes W h + s sum_c d_c B_c A_c h with per-sample weights d set by
  the method's routing context (one row per sample of the batch, kept for the whole generate call);
- a *fused* layer computes W h + s B_f A_f h with one fused expert materialised once per task:
  'code' fusion B_f = sum_c B_c, A_f = sum_c A_c (rank r); 'paper' fusion B_f = [B_1 .. B_T],
  A_f = [A_1; ..; A_T] (rank T r), which is exactly sum_c B_c A_c.

Code fusion needs only the two sums, so a fused layer with `folds=True` folds every finished expert
into one (A_f, B_f) pair after each task (exactly: sums are linear) and stores rank r, not T r: this is
where HiDe's memory saving over "expand all" comes from. Paper fusion keeps every expert.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.models.families import decoder_layers, family_of


class HiDeLinear(nn.Module):
    """A frozen linear layer plus per-task LoRA experts (A_c: (r, in), B_c: (out, r))."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float, expanded: bool,
                 folds: bool = False, init: str = "kaiming") -> None:
        super().__init__()
        self.base = base
        self.init = init  # 'kaiming' (peft's LoRA A) or 'normal' (N(0, 0.01^2), the authors' code)
        self.folds = folds and not expanded  # keep only the code fusion's sums (see `fold`)
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.expanded = expanded
        self.experts_A = nn.ParameterList()
        self.experts_B = nn.ParameterList()
        self.training_expert: int | None = None  # index of the expert being trained, else None
        self.enabled = True                      # False: the frozen base layer alone (router features)
        self.routing: Tensor | None = None       # (batch, experts) weights while a routing context is open
        # materialised inference factors (buffers, so .to(device) moves them; not saved: rebuilt from experts)
        self.combined_A: Tensor | None
        self.combined_B: Tensor | None
        self.register_buffer("combined_A", None, persistent=False)  # (experts*r, in) or the fused A
        self.register_buffer("combined_B", None, persistent=False)  # (out, experts*r) or the fused B

    @property
    def num_experts(self) -> int:
        return len(self.experts_A)

    def add_expert(self) -> int:
        """Append a new expert (A as `init` says, B zero, so it starts as a no-op); return its index."""
        weight = self.base.weight
        a = torch.empty(self.rank, weight.shape[1], device=weight.device, dtype=torch.float32)
        if self.init == "normal":
            nn.init.normal_(a, mean=0.0, std=0.01)
        else:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.experts_A.append(nn.Parameter(a))
        self.experts_B.append(nn.Parameter(torch.zeros(weight.shape[0], self.rank, device=weight.device)))
        return self.num_experts - 1

    def train_only(self, index: int | None) -> None:
        """Expert `index` is used and trained; every other expert is frozen (None: inference mode)."""
        for k in range(self.num_experts):
            self.experts_A[k].requires_grad_(k == index)
            self.experts_B[k].requires_grad_(k == index)
        self.training_expert = index

    @torch.no_grad()
    def fold(self) -> None:
        """Replace every expert by one holding (sum_c A_c, sum_c B_c); only for code-fused layers.

        Exact for code fusion, whose fused expert is that pair; the next task's expert is trained
        alone, as before, and folded in after its task."""
        if not self.folds or self.num_experts < 2:
            return
        a = torch.stack([p.detach() for p in self.experts_A]).sum(0)
        b = torch.stack([p.detach() for p in self.experts_B]).sum(0)
        self.experts_A = nn.ParameterList([nn.Parameter(a, requires_grad=False)])
        self.experts_B = nn.ParameterList([nn.Parameter(b, requires_grad=False)])

    @torch.no_grad()
    def materialise(self, experts: int, fusion: str) -> None:
        """Precompute the inference factors from the first `experts` experts (once per task)."""
        a = [p.detach() for p in list(self.experts_A)[:experts]]
        b = [p.detach() for p in list(self.experts_B)[:experts]]
        if not a:
            self.combined_A = self.combined_B = None
        elif self.expanded or fusion == "paper":
            self.combined_A, self.combined_B = torch.cat(a, 0), torch.cat(b, 1)  # (E*r, in), (out, E*r)
        else:
            self.combined_A, self.combined_B = torch.stack(a).sum(0), torch.stack(b).sum(0)  # (r, in), (out, r)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, seq, in)
        out = self.base(x)
        if not self.enabled:
            return out
        if self.training_expert is not None:
            k = self.training_expert
            h = self.dropout(x).to(torch.float32)
            return out + (self.scaling * (h @ self.experts_A[k].T) @ self.experts_B[k].T).to(out.dtype)
        if self.combined_A is None:
            return out
        z = x.to(torch.float32) @ self.combined_A.T  # (batch, seq, E*r) routed, or (batch, seq, r') fused
        if self.expanded:
            experts = self.combined_A.shape[0] // self.rank
            weights = self.routing
            if weights is None:  # outside a routing context: every trained expert counts the same
                weights = z.new_full((x.shape[0], experts), 1.0 / experts)
            if weights.shape != (x.shape[0], experts):
                raise ConfigError(f"hide-llava: routing weights of shape {tuple(weights.shape)} for a batch of "
                                  f"{x.shape[0]} samples and {experts} experts")
            z = z * weights.to(z).repeat_interleave(self.rank, dim=1).unsqueeze(1)  # (batch, 1, E*r)
        return out + (self.scaling * z @ self.combined_B.T).to(out.dtype)


def num_decoder_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def wrap_targets(model: nn.Module, targets: tuple[str, ...], expanded: frozenset[int], rank: int, alpha: float,
                 dropout: float, fold_fused: bool = False, init: str = "kaiming") -> dict[str, HiDeLinear]:
    """Replace the target linear layers of every decoder block of the language model with `HiDeLinear`.

    `fold_fused`: the fused (not expanded) layers keep only the code fusion's sums (`HiDeLinear.fold`)."""
    prefix = family_of(model).language_model_regex
    pattern = re.compile(rf"^{prefix}\.layers\.(\d+)\..*\b({'|'.join(map(re.escape, targets))})$")
    found = [(name, module, int(m.group(1))) for name, module in model.named_modules()
             if (m := pattern.match(name)) and isinstance(module, nn.Linear)]
    if not found:
        raise ConfigError(f"hide-llava: no linear layer matches {pattern.pattern!r}; check adapter.target_modules")
    return {name: _wrap(model, name, HiDeLinear(module, rank, alpha, dropout, expanded=layer in expanded,
                                                folds=fold_fused, init=init)) for name, module, layer in found}


def wrap_vision_tower(model: nn.Module, rank: int, alpha: float, dropout: float,
                      init: str = "kaiming") -> dict[str, HiDeLinear]:
    """Replace every linear layer of the vision tower with an expanded (routed) `HiDeLinear`."""
    prefix = family_of(model).vision_tower + "."
    found = [(name, module) for name, module in model.named_modules()
             if name.startswith(prefix) and isinstance(module, nn.Linear)]
    if not found:
        raise ConfigError(f"hide-llava: the vision tower ({prefix[:-1]}) has no linear layer for vision experts")
    return {name: _wrap(model, name, HiDeLinear(module, rank, alpha, dropout, expanded=True, init=init))
            for name, module in found}


def _wrap(model: nn.Module, name: str, wrapper: HiDeLinear) -> HiDeLinear:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, wrapper)
    return wrapper


def hide_layers(model: nn.Module) -> list[HiDeLinear]:
    return [m for m in model.modules() if isinstance(m, HiDeLinear)]
