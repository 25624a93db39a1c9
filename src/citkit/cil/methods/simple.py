"""The reference points of a class-incremental stream: LoRA-FT, Joint, SimpleCIL, and SLCA-style alignment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from citkit.cil.methods.base import (
    AlignmentConfig,
    CILMethod,
    Phase,
    alignment_phase,
    as_classifier,
    extract_features,
    new_class_gaussians,
    register_cil_method,
)
from citkit.cil.stats import ClassGaussians
from citkit.cil.stream import CILTask


@register_cil_method("lora-ft")
class LoRAFineTuning(CILMethod):
    """One LoRA and the head trained on each task in turn, new-class logits only (the lower bound)."""


@register_cil_method("joint")
class Joint(CILMethod):
    """One LoRA trained at task t on every image of tasks 1..t, CE over all seen classes (the upper bound)."""

    masks_old_classes = False

    def training_samples(self, task: CILTask, previous: list[CILTask]) -> list[int]:
        return [i for t in previous for i in t.train] + list(task.train)


@register_cil_method("simplecil")
class SimpleCIL(CILMethod):
    """Zhou et al. 2023 (SimpleCIL, PILOT): the frozen backbone, a cosine classifier whose weights are the
    class means of the training features. Nothing is trained; the runner calls `after_task` directly."""

    trains = False
    classifier = "cosine"

    def attach(self, model: nn.Module) -> nn.Module:
        return model  # no adapter: the pretrained backbone as it is

    def after_task(self, task: CILTask, model: nn.Module) -> None:
        classifier = as_classifier(model)
        features, labels = extract_features(classifier, task)
        prototypes = torch.stack([features[labels == c].mean(0) for c in task.classes])  # (k, d)
        with torch.no_grad():
            classifier.head.parts[task.index].weight.copy_(prototypes)


@dataclass(frozen=True)
class SLCAConfig:
    """SLCA-style classifier alignment (Zhang et al. 2023) on a sequentially fine-tuned LoRA."""

    alignment: AlignmentConfig = field(default_factory=AlignmentConfig, metadata={"help": "The alignment phase."})


@register_cil_method("slca")
class SLCA(CILMethod):
    """LoRA-FT, then after each task: Gaussian statistics of the new classes' features, and the head
    re-trained on pseudo-features of every seen class (classifier alignment). Departure: SLCA's "slow
    learner" (backbone lr 100x below the head's) is not reproduced; the backbone changes only through
    the rank-r LoRA. Old classes' statistics are not updated as the backbone drifts (as in SLCA)."""

    config_class = SLCAConfig

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.gaussians = ClassGaussians()

    def phases(self, task: CILTask, model: nn.Module) -> Iterator[Phase]:
        classifier = as_classifier(model)
        align = self.config.alignment
        self.gaussians.add(task.classes, *new_class_gaussians(classifier, task, align.shrinkage))
        yield alignment_phase(classifier, self.gaussians, align, task, seed=self.run_seed * 1000 + task.index)

    def state_dict(self) -> dict[str, Tensor]:
        return self.gaussians.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.gaussians.load_state_dict(state)


