"""InfLoRA (Liang and Li 2024): one LoRA branch per task whose A is designed, not trained.

Before task t, each adapted layer's A_t is set to the top-r directions of the new task's layer inputs
after projecting out the subspace M_l spanned by earlier tasks' inputs: A_t M_l = 0, so the new branch
cannot change the layer's output on inputs of the old tasks' subspace. Only B_t (zero at start) trains.
After the task, M_l grows by the principal directions of the task's inputs left outside it, until
`threshold` of the inputs' energy is inside (the criterion of GPM, Saha et al. 2021).

Departures: A_t is the top-r eigenvectors of the projected input covariance (the paper designs it
from the same projected inputs through the gradient); the threshold is fixed, not ramped per task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from citkit.cil.backbone import ViTClassifier, lora_layers
from citkit.cil.methods.base import as_classifier, register_cil_method
from citkit.cil.methods.per_task import PerTaskLoRA
from citkit.cil.stream import CILTask
from citkit.errors import ConfigError


@dataclass(frozen=True)
class InfLoRAConfig:
    threshold: float = field(default=0.95, metadata={"help": (
        "Share of the task inputs' energy (sum of squared singular values) the stored subspace must hold after "
        "each task (InfLoRA / GPM: 0.95-0.99).")})
    max_samples: int | None = field(default=None, metadata={"help": "Images per task for the input statistics "
                                                                     "(default: all)."})

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"inflora threshold must be in (0, 1], got {self.threshold}")


@contextmanager
def _captured_inputs(layers: dict[str, nn.Module], sums: dict[str, Tensor]) -> Iterator[None]:
    """Accumulate X^T X of each layer's inputs (all tokens) into `sums` while the block runs."""

    def hook(name: str):  # type: ignore[no-untyped-def]
        def accumulate(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()  # (tokens, in)
            sums[name] = sums.get(name, 0) + x.T @ x
        return accumulate

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def input_covariances(model: ViTClassifier, task: CILTask, limit: int | None) -> dict[str, Tensor]:
    layers = dict(lora_layers(model))
    sums: dict[str, Tensor] = {}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with _captured_inputs(layers, sums):
            for batch in task.batches(64, limit=limit):
                model.features(batch["pixel_values"].to(device))
    finally:
        model.train(was_training)
    return sums


def project_out(covariance: Tensor, basis: Tensor | None) -> Tensor:
    """(I - M M^T) C (I - M M^T) for an orthonormal basis M (d, k)."""
    if basis is None or basis.shape[1] == 0:
        return covariance
    projector = torch.eye(covariance.shape[0], dtype=covariance.dtype) - basis @ basis.T
    return projector @ covariance @ projector


def top_directions(covariance: Tensor, count: int) -> Tensor:
    """(count, d): the eigenvectors of the largest eigenvalues, as rows."""
    values, vectors = torch.linalg.eigh(covariance)
    return vectors[:, values.argsort(descending=True)[:count]].T


def grow_basis(covariance: Tensor, basis: Tensor | None, threshold: float) -> Tensor:
    """Add residual principal directions to `basis` until `threshold` of the inputs' energy lies inside."""
    dim = covariance.shape[0]
    basis = basis if basis is not None else covariance.new_zeros(dim, 0)
    total = float(torch.trace(covariance))
    inside = float(torch.trace(basis.T @ covariance @ basis)) if basis.shape[1] else 0.0
    if total <= 0 or inside / total >= threshold:
        return basis
    values, vectors = torch.linalg.eigh(project_out(covariance, basis))
    order = values.argsort(descending=True)
    added = []
    for index in order:
        if inside / total >= threshold or basis.shape[1] + len(added) >= dim:
            break
        inside += float(values[index])
        added.append(vectors[:, index])
    return torch.cat([basis, torch.stack(added, 1)], 1) if added else basis


@register_cil_method("inflora")
class InfLoRA(PerTaskLoRA):
    """One branch per task; A_t designed orthogonal to the old tasks' input subspace and frozen; B_t trains."""

    config_class = InfLoRAConfig

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.bases: dict[str, Tensor] = {}  # layer name -> (in, k) orthonormal basis of old inputs

    def before_task(self, task: CILTask, model: nn.Module) -> None:
        super().before_task(task, model)
        classifier = as_classifier(model)
        current = self.adapters[-1]
        covariances = input_covariances(classifier, task, self.config.max_samples)
        for name, layer in lora_layers(classifier):
            design = top_directions(project_out(covariances[name], self.bases.get(name)), self.adapter.rank)
            weight = layer.lora_A[current].weight
            with torch.no_grad():
                weight.copy_(design.to(weight.dtype))
            weight.requires_grad_(False)

    def activate(self, model: nn.Module) -> None:
        super().activate(model)
        for _, layer in lora_layers(as_classifier(model)):  # A is designed, never trained
            layer.lora_A[self.adapters[-1]].weight.requires_grad_(False)

    def after_task(self, task: CILTask, model: nn.Module) -> None:
        covariances = input_covariances(as_classifier(model), task, self.config.max_samples)
        for name, covariance in covariances.items():
            self.bases[name] = grow_basis(covariance, self.bases.get(name), self.config.threshold)

    def state_dict(self) -> dict[str, Tensor]:
        return {f"basis.{name}": basis.float() for name, basis in self.bases.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.bases = {k[len("basis."):]: v.double() for k, v in state.items() if k.startswith("basis.")}
