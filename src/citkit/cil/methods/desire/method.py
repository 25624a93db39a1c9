"""DESIRE (rehearsal-free CIL with LoRA): dynamic representation consolidation + decision boundary refinement.

Per task t (shared/methods/desire.md; the paper's exact formulas were not available, so every open
choice is an option of `DESIREConfig`, its default documented there):

1. train a fresh LoRA set Delta_t (adapter "task") with CE on the new classes only; the consolidated set
   (adapter "consolidated") is not in the forward pass;
2. consolidation (t >= 2): features of the current images under the old model (base + consolidated) and
   the new one (base + Delta_t); per adapted layer, Delta = a_l Delta_old + b_l Delta_t with (a_l, b_l)
   calibrated through the engine on a feature-space loss (plasticity to f_new, stability to f_old) plus CE
   over all seen classes, or fixed (task arithmetic); the result is folded into the consolidated set by
   SVD (rank `consolidated_rank`), so only two LoRA sets ever exist;
3. old-class means are moved by the drift old -> merged model on the current images; mean and
   covariance of each new class are taken under the merged model;
4. refinement: the head is re-trained on pseudo-features drawn from every seen class's Gaussian.
Test time: base + consolidated set, head over every seen class.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from citkit.cil.backbone import ViTClassifier, add_lora, lora_layers, set_active_adapters
from citkit.cil.methods.base import (
    CILMethod,
    Phase,
    alignment_phase,
    as_classifier,
    extract_features,
    new_class_gaussians,
    register_cil_method,
)
from citkit.cil.methods.desire.config import DESIREConfig
from citkit.cil.methods.desire.merge import MergeCalibration, add_coefficients, delta, fold, remove_coefficients
from citkit.cil.stats import ClassGaussians, drift_compensation
from citkit.cil.stream import CILTask, collate
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.engine.config import TrainConfig
from citkit.methods.base import Method

TASK, CONSOLIDATED = "task", "consolidated"


class CalibrateMerge(Method):
    """Trains the merge coefficients only; objective: plasticity + stability + CE (named, logged)."""

    def __init__(self, config: Any, old_tasks: int = 1) -> None:
        super().__init__(config)
        self.stability = config.stability_weight * (old_tasks if config.stability_scale == "old_tasks" else 1)

    def attach(self, model: nn.Module) -> nn.Module:
        model.coefficients.requires_grad_(True)
        return model

    def objective(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        c = self.config
        features = outputs.features
        return {"plasticity": c.plasticity_weight * (features - batch["new_features"]).square().sum(-1).mean(),
                "stability": self.stability * (features - batch["old_features"]).square().sum(-1).mean(),
                "ce": c.ce_weight * F.cross_entropy(outputs.logits, batch["labels"])}


@dataclass
class CalibrationTask:
    """The current task's images with their old- and new-model features, as an engine task."""

    name: str
    index: int
    task: CILTask
    old_features: Tensor
    new_features: Tensor

    @property
    def train(self) -> list[int]:
        return list(range(len(self.task.train_indices)))

    def source(self, samples: list[int]) -> BatchSource:
        def item(position: int) -> dict[str, Tensor]:
            return {**self.task.train_images.item(self.task.train_indices[position]),
                    "old_features": self.old_features[position], "new_features": self.new_features[position]}

        return BatchSource(LazyDataset(samples, item), collate)


@register_cil_method("desire")
class DESIRE(CILMethod):
    """DESIRE: two LoRA sets (consolidated + current), learned merge, drift-compensated Gaussians, refinement."""

    config_class = DESIREConfig

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.gaussians = ClassGaussians()
        self.history: list[dict[str, Any]] = []  # per task: merge coefficients, truncation error
        self._before: Tensor | None = None       # merge='none': current images' features before training

    @property
    def consolidates(self) -> bool:
        return self.config.merge != "none"

    def attach(self, model: nn.Module) -> nn.Module:
        classifier = as_classifier(model)
        add_lora(classifier, self.adapter, TASK)
        if self.consolidates:
            add_lora(classifier, self.adapter, CONSOLIDATED, rank=self.config.consolidated_rank)
            for _, layer in lora_layers(classifier):  # the consolidated set starts empty (Delta = 0)
                torch.nn.init.zeros_(layer.lora_A[CONSOLIDATED].weight)
                torch.nn.init.zeros_(layer.lora_B[CONSOLIDATED].weight)
        set_active_adapters(classifier, [TASK], [TASK])
        return model

    def before_task(self, task: CILTask, model: nn.Module) -> None:
        super().before_task(task, model)
        classifier = as_classifier(model)
        if self.consolidates:
            for _, layer in lora_layers(classifier):  # a fresh Delta_t: peft's init (Kaiming A, zero B)
                layer.reset_lora_parameters(TASK, True)
        elif task.index > 0 and self.config.drift_compensation != "none":
            self._before = extract_features(classifier, task)[0]
        set_active_adapters(classifier, [TASK], [TASK])

    def phases(self, task: CILTask, model: nn.Module) -> Iterator[Phase]:
        classifier = as_classifier(model)
        if self.consolidates:
            yield from self._consolidate(task, classifier)
        elif self._before is not None:
            after = extract_features(classifier, task)[0]
            self._move_old_means(self._before, after)
            self._before = None
        self.prepare_inference(classifier)
        self.gaussians.add(task.classes, *new_class_gaussians(classifier, task, self.config.alignment.shrinkage))
        if self.config.refine:
            yield alignment_phase(classifier, self.gaussians, self.config.alignment, task,
                                  seed=self.run_seed * 1000 + task.index)

    def _consolidate(self, task: CILTask, model: ViTClassifier) -> Iterator[Phase]:
        layers = [layer for _, layer in lora_layers(model)]
        t = task.index  # old tasks folded into the consolidated set
        if t == 0:
            a, b = [0.0] * len(layers), [1.0] * len(layers)
            old = None
        else:
            set_active_adapters(model, [CONSOLIDATED], [])
            old = extract_features(model, task)[0]
            set_active_adapters(model, [TASK], [])
            new = extract_features(model, task)[0]
            start = (t / (t + 1), 1 / (t + 1)) if self.config.merge == "average" or (
                self.config.merge == "learned" and self.config.calibration.init == "average") else (1.0, 1.0)
            a, b = [start[0]] * len(layers), [start[1]] * len(layers)
            if self.config.merge == "learned":
                coefficients = add_coefficients(layers, CONSOLIDATED, TASK, *start)
                set_active_adapters(model, [CONSOLIDATED, TASK], [])
                calibration = self.config.calibration
                try:
                    yield Phase("merge", MergeCalibration(model, coefficients),
                                CalibrateMerge(calibration, old_tasks=t),
                                CalibrationTask(f"{task.name}-merge", t, task, old.to(_device(model)),
                                                new.to(_device(model))),
                                TrainConfig(epochs=calibration.epochs, lr=calibration.lr,
                                            batch_size=calibration.batch_size,
                                            warmup_ratio=0.0, progress=False))
                    values = [float(c) for c in coefficients]
                    a, b = values[0::2], values[1::2]
                finally:
                    remove_coefficients(layers, (CONSOLIDATED, TASK))
        errors = []
        with torch.no_grad():
            for layer, a_l, b_l in zip(layers, a, b, strict=True):
                merged = a_l * delta(layer, CONSOLIDATED) + b_l * delta(layer, TASK)
                down, up, error = fold(merged, self.config.consolidated_rank, layer.scaling[CONSOLIDATED])
                layer.lora_A[CONSOLIDATED].weight.copy_(down)
                layer.lora_B[CONSOLIDATED].weight.copy_(up)
                errors.append(error)
        set_active_adapters(model, [CONSOLIDATED], [])
        if old is not None:
            self._move_old_means(old, extract_features(model, task)[0])
        self.history.append({"task": task.name, "a": a, "b": b, "max_truncation_error": max(errors)})

    def _move_old_means(self, before: Tensor, after: Tensor) -> None:
        if self.gaussians.classes:
            self.gaussians.means = drift_compensation(self.gaussians.means, before, after,
                                                      self.config.drift_compensation)

    def prepare_inference(self, model: nn.Module) -> None:
        active = CONSOLIDATED if self.consolidates else TASK
        set_active_adapters(as_classifier(model), [active], [TASK])

    def state_dict(self) -> dict[str, Tensor]:
        return self.gaussians.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.gaussians.load_state_dict(state)

    def extra_state(self) -> dict[str, Any]:
        return {"merges": self.history}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("merges", []))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
