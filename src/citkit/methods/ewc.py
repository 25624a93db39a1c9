"""EWC: pull the adapter parameters that mattered for earlier tasks back toward their values.

Also the base of MAS (`methods/mas.py`, another importance) and of the TIR variants (`ewc-tir`,
`mas-tir`: He et al. 2023's task-similarity-informed regularisation, `methods/task_similarity.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.methods._importance import (
    fisher_diagonal,
    merge_importance,
    normalize_importance,
    quadratic_penalty,
    scale_by_owner,
    to_devices_of,
    trainable_parameters,
)
from citkit.methods.base import Method, prefixed, register_method, snapshot_trainable, unprefixed
from citkit.methods.task_similarity import SimilarityTracker, TIRConfig

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class EWCConfig:
    """Options of EWC; the defaults are He et al. 2023's setting (normalised, max-merged importance)."""

    penalty_weight: float = field(default=1e8, metadata={"help": (
        "lambda in CE + lambda/2 * sum I (theta - theta*)^2. With normalize=True the importances sum to "
        "one, so lambda must be large (1e8 in He et al.'s code); with classic un-normalised Fisher "
        "values lambda is of order 1-1e4.")})
    normalize: bool = field(default=True, metadata={"help": (
        "Scale each task's importance to sum to one over all parameters (He et al.: True; classic "
        "EWC: False).")})
    merge: Literal["sum", "max"] = field(default="max", metadata={"help": (
        "Combine importances across tasks: 'max' element-wise, remembering the owner task (He et al.), "
        "or 'sum' (classic multi-penalty EWC).")})
    importance_batch_size: int = field(default=1, metadata={"help": (
        "Samples per gradient in the importance pass. 1 gives the per-sample empirical Fisher of the "
        "paper; larger batches are faster but square a batch-mean gradient (a smaller estimate).")})
    importance_max_samples: int | None = field(default=None, metadata={"help": (
        "Use at most this many of the task's training samples for the importance (default: all).")})
    tir: TIRConfig = field(default_factory=TIRConfig, metadata={"help": (
        "Task-similarity-informed regularisation (off).")})

    def __post_init__(self) -> None:
        if self.penalty_weight < 0:
            raise ConfigError(f"method.penalty_weight must be >= 0, got {self.penalty_weight}")
        if self.merge not in ("sum", "max"):
            raise ConfigError(f"method.merge {self.merge!r} is unknown; use 'sum' or 'max'")
        if self.importance_batch_size < 1:
            raise ConfigError(f"method.importance_batch_size must be >= 1, got {self.importance_batch_size}")
        if self.importance_max_samples is not None and self.importance_max_samples < 1:
            raise ConfigError("method.importance_max_samples must be >= 1 or unset, got "
                              f"{self.importance_max_samples}")


@dataclass(frozen=True)
class EWCTIRConfig(EWCConfig):
    """EWC with TIR switched on (He et al. 2023)."""

    tir: TIRConfig = field(default_factory=lambda: TIRConfig(enabled=True), metadata={"help": (
        "Task-similarity-informed regularisation (enabled).")})


@register_method("ewc")
class EWC(Method):
    """Elastic weight consolidation (Kirkpatrick et al. 2017) on the trainable (adapter) parameters.

    After each task the importance of every adapter entry is computed, normalised if asked and merged
    into the stored importance together with the index of the task that owns each entry. On later
    tasks the loss gains (lambda/2) sum I (theta - theta*)^2, theta* the parameters at the start of
    the task. With TIR, I is first scaled by (1 - similarity of its owner task to the new task)."""

    config_class = EWCConfig
    penalty_name = "ewc"

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.importance: dict[str, Tensor] = {}  # parameter name -> merged importance, same shape
        self.owner: dict[str, Tensor] = {}       # parameter name -> int16 index of the owning task
        self.anchor: dict[str, Tensor] = {}      # theta*: parameter values at the start of the task
        self.weights: dict[str, Tensor] = {}     # importance used by the penalty (TIR-scaled)
        self.similarity = SimilarityTracker(self.config.tir)

    def compute_importance(self, task: TaskData, model: nn.Module) -> dict[str, Tensor]:
        """This task's importance: the diagonal empirical Fisher of its training data."""
        return fisher_diagonal(model, self._batches(task))

    def _batches(self, task: TaskData) -> Iterator[dict[str, Tensor]]:
        return task.batches(self.config.importance_batch_size, limit=self.config.importance_max_samples)

    def before_task(self, task: TaskData, model: nn.Module) -> None:
        self.anchor = snapshot_trainable(model)
        self.importance = to_devices_of(model, self.importance)
        self.owner = to_devices_of(model, self.owner)
        self.weights = self.importance
        if self.config.tir.enabled:
            similarity = self.similarity.add(task, model)  # (task.index,): to each earlier task
            if self.importance:
                self.weights = scale_by_owner(self.importance, self.owner, similarity)

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        if not self.weights:  # first task: nothing to protect yet
            device = next(iter(trainable_parameters(model).values())).device
            return {self.penalty_name: torch.zeros((), device=device)}
        penalty = quadratic_penalty(model, self.anchor, self.weights)
        return {self.penalty_name: 0.5 * self.config.penalty_weight * penalty}

    def after_task(self, task: TaskData, model: nn.Module) -> None:
        importance = self.compute_importance(task, model)
        if self.config.normalize:
            importance = normalize_importance(importance)
        self.importance, self.owner = merge_importance(self.importance, self.owner, importance, task.index,
                                                       self.config.merge)
        self.weights = {}  # recomputed, TIR-scaled if asked, in the next before_task

    def state_dict(self) -> dict[str, Tensor]:
        return (prefixed("importance.", self.importance) | prefixed("owner.", self.owner)
                | self.similarity.state_dict())

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.importance = unprefixed("importance.", state)
        self.owner = unprefixed("owner.", state)
        self.similarity.load_state_dict(state)

    def extra_state(self) -> dict[str, Any]:
        return {"tir": self.similarity.extra_state()} if self.config.tir.enabled else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.config.tir.enabled:
            self.similarity.load_extra_state(state.get("tir", {}))


@register_method("ewc-tir")
class EWCTIR(EWC):
    """EWC with task-similarity-informed regularisation (He et al. 2023), on by default."""

    config_class = EWCTIRConfig
