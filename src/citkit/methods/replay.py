"""Replay: keep a seeded share of each finished task's training samples and mix it into later tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from citkit.errors import ConfigError, ResumeMismatchError
from citkit.methods.base import Method, register_method

if TYPE_CHECKING:
    from citkit.data.samples import Sample
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class ReplayConfig:
    """How much of each finished task the buffer keeps."""

    fraction: float = field(default=0.1, metadata={"help": (
        "Share of each finished task's training samples kept in the buffer (rounded, at least one). "
        "Ignored when `count` is set.")})
    count: int | None = field(default=None, metadata={"help": (
        "Keep exactly this many samples per finished task (all of them if the task has fewer).")})
    seed: int = field(default=0, metadata={"help": (
        "Seed of the choice of kept samples (combined with the task index).")})

    def __post_init__(self) -> None:
        if self.count is None and not 0 < self.fraction <= 1:
            raise ConfigError(f"method.fraction must be in (0, 1], got {self.fraction}; or set method.count")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"method.count must be >= 1, got {self.count}")

    def kept(self, available: int) -> int:
        """Number of samples kept from a task with `available` training samples."""
        wanted = self.count if self.count is not None else max(1, round(self.fraction * available))
        return min(wanted, available)


@register_method("replay")
class Replay(Method):
    """Experience replay: the buffer holds, per finished task, a seeded random subset of its samples.

    The buffer is stored as sample ids (JSON), so checkpoints stay small and a resumed run maps the
    ids back to the samples of the earlier tasks it is given. Each later task trains on its own
    samples plus the whole buffer, shuffled together by the engine."""

    config_class = ReplayConfig

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.buffer: dict[str, list[str]] = {}  # task name -> ids of its kept samples, in choice order

    def choose(self, task: TaskData) -> list[str]:
        """Ids of the samples of `task` to keep; the same seed and task index give the same ids."""
        rng = np.random.default_rng([self.config.seed, task.index])
        picked = rng.choice(len(task.train), size=self.config.kept(len(task.train)), replace=False)
        return [task.train[int(i)].id for i in picked]

    def training_samples(self, task: TaskData, previous: list[TaskData]) -> list[Sample]:
        replayed = []
        for old in previous:
            if old.name not in self.buffer:
                continue
            by_id = {s.id: s for s in old.train}
            missing = [i for i in self.buffer[old.name] if i not in by_id]
            if missing:
                raise ResumeMismatchError(
                    f"replay buffer of task {old.name!r} holds sample id {missing[0]!r}, which its training "
                    "data no longer has; the data changed since the run began: restore it or start a new run")
            replayed += [by_id[i] for i in self.buffer[old.name]]
        return list(task.train) + replayed

    def after_task(self, task: TaskData, model: nn.Module) -> None:
        self.buffer[task.name] = self.choose(task)

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": {name: list(ids) for name, ids in self.buffer.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer = {name: list(ids) for name, ids in state.get("buffer", {}).items()}
