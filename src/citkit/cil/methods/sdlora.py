"""SD-LoRA (Wu et al. 2025): magnitude and direction of each task's LoRA update decoupled.

Task t trains a new LoRA (A_t, B_t) as usual. Afterwards its update is frozen as a unit-norm direction
D_t = s B_t A_t / ||s B_t A_t||_F with a magnitude alpha_t (starting at ||s B_t A_t||_F, so the model is
unchanged); on later tasks every earlier magnitude keeps learning while the directions stay fixed:
W = W_0 + sum_{i<t} alpha_i D_i + s B_t A_t. Departure: the paper's rank-reduced variants (SD-LoRA-RR,
-KD) are not implemented.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from citkit.cil.backbone import lora_layers
from citkit.cil.methods.base import as_classifier, register_cil_method
from citkit.cil.methods.per_task import PerTaskLoRA
from citkit.cil.stream import CILTask


class Direction(nn.Module):
    """Parametrization of B_i: alpha * B / ||s B A||_F, A (frozen) read from the layer when called."""

    def __init__(self, magnitude: float, layer: nn.Module, adapter: str) -> None:
        super().__init__()
        self.magnitude = nn.Parameter(torch.tensor(float(magnitude)))
        self._where = (layer, adapter)  # a plain tuple, so the layer is not registered as a submodule

    def forward(self, weight: Tensor) -> Tensor:
        layer, adapter = self._where
        norm = (layer.scaling[adapter] * weight @ layer.lora_A[adapter].weight).norm().clamp(min=1e-12)
        return self.magnitude * weight / norm.detach()


@register_cil_method("sd-lora")
class SDLoRA(PerTaskLoRA):
    """Earlier tasks' LoRA directions frozen, their magnitudes trained on every later task."""

    def after_task(self, task: CILTask, model: nn.Module) -> None:
        self._decouple(model, self.adapters[-1], magnitude=None)

    def resume(self, model: nn.Module, finished: list[str]) -> nn.Module:
        model = super().resume(model, finished)
        for name in self.adapters[:len(finished)]:  # magnitudes are placeholders until the checkpoint loads
            self._decouple(model, name, magnitude=1.0)
        self.activate(model)
        return model

    def _decouple(self, model: nn.Module, adapter: str, magnitude: float | None) -> None:
        for _, layer in lora_layers(as_classifier(model)):
            b = layer.lora_B[adapter]
            if parametrize.is_parametrized(b, "weight"):
                continue
            with torch.no_grad():
                size = float((layer.scaling[adapter] * b.weight @ layer.lora_A[adapter].weight).norm())
            parametrize.register_parametrization(b, "weight", Direction(size if magnitude is None else magnitude,
                                                                        layer, adapter))

    def activate(self, model: nn.Module) -> None:
        super().activate(model)
        for _, layer in lora_layers(as_classifier(model)):
            for adapter in self.adapters[:-1]:
                b = layer.lora_B[adapter]
                if parametrize.is_parametrized(b, "weight"):
                    b.parametrizations.weight.original.requires_grad_(False)
                    b.parametrizations.weight[0].magnitude.requires_grad_(True)
