"""LwF: distil the previous task's model into the current one on the new task's answer tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from citkit.errors import ConfigError
from citkit.methods._importance import answer_logit_mask, trainable_parameters, unwrap_parallel
from citkit.methods.base import Method, register_method, snapshot_trainable

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class LwFConfig:
    """Options of learning without forgetting (Li and Hoiem 2017)."""

    distill_weight: float = field(default=1.0, metadata={"help": (
        "lambda in CE + lambda * T^2 * KL(teacher || student) (paper: 1).")})
    temperature: float = field(default=2.0, metadata={"help": (
        "Softmax temperature T of teacher and student (usual: 2).")})

    def __post_init__(self) -> None:
        if self.distill_weight < 0:
            raise ConfigError(f"method.distill_weight must be >= 0, got {self.distill_weight}")
        if self.temperature <= 0:
            raise ConfigError(f"method.temperature must be > 0, got {self.temperature}")


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                    temperature: float) -> Tensor:
    """Mean over masked positions of KL(teacher || student) between temperature-softened distributions."""
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # (batch, seq, vocab)
    teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_position = (teacher.exp() * (teacher - student)).sum(-1)  # (batch, seq)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


@register_method("lwf")
class LwF(Method):
    """The teacher is the model with the adapter weights it had at the end of the previous task.

    No copy of the model is kept: at the start of each task after the first, the trainable (adapter)
    parameters are snapshotted, and the teacher's logits come from the same model run with that
    snapshot swapped in (`torch.func.functional_call`, under no_grad, dropout off). The snapshot is
    rebuilt from the loaded adapter on resume, so the method keeps no checkpointed state.
    Loss term: lambda * T^2 * KL(teacher || student), averaged over answer tokens (labels != -100,
    shifted as in the LM loss); T^2 keeps gradient sizes independent of T (Hinton et al. 2015)."""

    config_class = LwFConfig

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.teacher: dict[str, Tensor] = {}  # parameter name -> value at the end of the previous task

    def before_task(self, task: TaskData, model: nn.Module) -> None:
        self.teacher = snapshot_trainable(unwrap_parallel(model)) if task.index > 0 else {}

    @torch.no_grad()
    def teacher_logits(self, batch: dict[str, Tensor], model: nn.Module) -> Tensor:
        module = unwrap_parallel(model)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        was_training = module.training
        module.eval()
        try:
            return functional_call(module, self.teacher, args=(), kwargs=inputs, strict=False).logits
        finally:
            module.train(was_training)

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        if not self.teacher:  # first task: no previous model
            device = next(iter(trainable_parameters(model).values())).device
            return {"lwf": torch.zeros((), device=device)}
        mask = answer_logit_mask(batch["labels"])
        kl = distillation_kl(outputs.logits, self.teacher_logits(batch, model), mask, self.config.temperature)
        return {"lwf": self.config.distill_weight * self.config.temperature ** 2 * kl}
