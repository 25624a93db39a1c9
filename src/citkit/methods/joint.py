"""Joint (multi-task) training: the upper bound of a stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from citkit.methods.base import Method, register_method

if TYPE_CHECKING:
    from citkit.data.samples import Sample
    from citkit.engine.task_data import TaskData


@register_method("joint")
class Joint(Method):
    """One LoRA trained, at each task, on the union of every task seen so far.

    The final row is the classic multi-task upper bound (one adapter on all the data); the rows
    before it make the matrix complete, so every metric is defined for Joint as for the others.
    Training cost grows with the task index (task t trains on t tasks' data)."""

    def training_samples(self, task: TaskData, previous: list[TaskData]) -> list[Sample]:
        return [s for t in previous for s in t.train] + list(task.train)
