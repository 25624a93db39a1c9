"""The LoRA merge of DESIRE: learnable per-layer coefficients on two peft adapters, and the SVD fold.

Pure tensor functions plus a torch parametrization; nothing here trains (the calibration phase goes
through the engine, `method.py`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from transformers.utils import ModelOutput

from citkit.cil.backbone import ViTClassifier


class Scaled(nn.Module):
    """Parametrization W -> c * W with a learnable scalar c (a merge coefficient)."""

    def __init__(self, coefficient: nn.Parameter) -> None:
        super().__init__()
        self.coefficient = coefficient

    def forward(self, weight: Tensor) -> Tensor:
        return self.coefficient * weight


def delta(layer: nn.Module, adapter: str) -> Tensor:
    """scaling * B A of one peft LoRA layer's adapter: (out_features, in_features)."""
    return layer.scaling[adapter] * (layer.lora_B[adapter].weight @ layer.lora_A[adapter].weight)


def fold(merged: Tensor, rank: int, scaling: float) -> tuple[Tensor, Tensor, float]:
    """Best rank-`rank` factors (A (rank, in), B (out, rank)) with scaling * B A ~ merged, by SVD, and the
    relative Frobenius error of the truncation (0 when merged has rank <= `rank`)."""
    u, s, vh = torch.linalg.svd(merged.double(), full_matrices=False)
    keep = min(rank, len(s))
    root = s[:keep].sqrt()
    b = (u[:, :keep] * root) / scaling ** 0.5   # (out, keep)
    a = (root[:, None] * vh[:keep]) / scaling ** 0.5  # (keep, in)
    if keep < rank:  # pad: unused ranks contribute nothing
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - keep)], 1)
        a = torch.cat([a, a.new_zeros(rank - keep, a.shape[1])], 0)
    total = float(s.square().sum())
    error = (float(s[keep:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
    return a.float(), b.float(), error


def add_coefficients(layers: list[nn.Module], old: str, new: str, a: float, b: float) -> nn.ParameterList:
    """Scale each layer's `old` and `new` adapter by learnable (a_l, b_l); returns [a_1, b_1, a_2, ...]."""
    coefficients = nn.ParameterList()
    for layer in layers:
        device = layer.lora_B[new].weight.device
        for adapter, start in ((old, a), (new, b)):
            coefficient = nn.Parameter(torch.tensor(float(start), device=device))
            parametrize.register_parametrization(layer.lora_B[adapter], "weight", Scaled(coefficient))
            coefficients.append(coefficient)
    return coefficients


def remove_coefficients(layers: list[nn.Module], adapters: tuple[str, str]) -> None:
    """Undo `add_coefficients`: the adapters' B matrices are their own values again."""
    for layer in layers:
        for adapter in adapters:
            if parametrize.is_parametrized(layer.lora_B[adapter], "weight"):
                parametrize.remove_parametrizations(layer.lora_B[adapter], "weight", leave_parametrized=False)


class MergeCalibration(nn.Module):
    """The classifier with both adapters active and scaled; `forward` also passes the target features on."""

    def __init__(self, classifier: ViTClassifier, coefficients: nn.ParameterList) -> None:
        super().__init__()
        self.classifier = classifier
        self.coefficients = coefficients

    def forward(self, pixel_values: Tensor, labels: Tensor, old_features: Tensor, new_features: Tensor) -> ModelOutput:
        features = self.classifier.features(pixel_values)
        return ModelOutput(features=features, logits=self.classifier.head(features))
