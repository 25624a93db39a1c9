"""EWC and LwF on the ViT: citkit's CIT method objects (`citkit.methods.ewc`, `citkit.methods.lwf`) with the
CIL structure (LoRA on the backbone, masked new-class CE) mixed in. The penalty, the importance pass and
the teacher-by-weight-swap are the CIT code itself; only what differs for a classifier is written here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from citkit.cil.methods.base import CILMethod, register_cil_method
from citkit.errors import ConfigError
from citkit.methods.ewc import EWC, EWCConfig
from citkit.methods.lwf import LwF, LwFConfig, distillation_kl


@dataclass(frozen=True)
class CILEWCConfig(EWCConfig):
    """EWC for CIL: classic un-normalised, summed Fisher (Kirkpatrick et al.) rather than He et al.'s setting."""

    penalty_weight: float = field(default=1e4, metadata={"help": (
        "lambda in CE + lambda/2 sum F (theta - theta*)^2 over the LoRA and head parameters (un-normalised "
        "empirical Fisher).")})
    normalize: bool = field(default=False, metadata={"help": "Scale each task's Fisher to sum to one."})
    merge: str = field(default="sum", metadata={"help": "Combine tasks' Fisher: 'sum' or 'max'."})  # type: ignore[assignment]
    importance_batch_size: int = field(default=8, metadata={"help": (
        "Images per gradient in the Fisher pass (1: per-sample Fisher; larger: faster, smaller estimate).")})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tir.enabled:
            raise ConfigError("tir needs instruction and answer embeddings of a multimodal LLM; set "
                              "method.tir.enabled=false for CIL")


@register_cil_method("ewc")
class CILEWC(CILMethod, EWC):
    """EWC (Kirkpatrick et al. 2017) on the LoRA and head parameters; Fisher of the model's CE over all seen
    classes, computed after each task on its training images."""

    config_class = CILEWCConfig


@dataclass(frozen=True)
class CILLwFConfig(LwFConfig):
    """LwF for CIL: distillation on the old classes' logits."""


@register_cil_method("lwf")
class CILLwF(CILMethod, LwF):
    """LwF (Li and Hoiem 2017): KL between the previous model's and the current model's softened
    distributions over the old classes, on the new task's images. Teacher = the same model with the
    adapter and head values of the end of the previous task swapped in (`citkit.methods.lwf`)."""

    config_class = CILLwFConfig

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        old = min(self.classes)  # global labels are in arrival order: the old classes are 0..old-1
        if not self.teacher or old == 0:
            return {"lwf": outputs.logits.new_zeros(())}
        teacher = self.teacher_logits(batch, model)[:, :old]
        student = outputs.logits[:, :old]
        everyone = torch.ones(student.shape[0], device=student.device)
        kl = distillation_kl(student, teacher, everyone, self.config.temperature)
        return {"lwf": self.config.distill_weight * self.config.temperature ** 2 * kl}
