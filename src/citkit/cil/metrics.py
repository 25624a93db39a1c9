"""Class-incremental metrics: pooled accuracy per stage, the task matrix, Avg / Last, old-to-new bias.

Two forms (shared/methods/metrics.md), both kept and named:

- **pooled** (the CIL convention): accuracy over every test image of every class seen so far at stage t.
  "Avg" is the mean of that curve over stages, "Last" its final value.
- **task-averaged**: A[t][i], accuracy on task i's test images after stage t, predicting among all seen
  classes (no task id); MAA and MFN of that matrix (citkit.eval.metrics), plus BWT and Forgetting.

Bias: at stage t >= 2, the share of old-class test images (tasks < t) predicted as one of the new task's
classes: how much the head leans toward what it learned last. Undefined (None) at stage 1.
FWT needs a zero-shot row, which a class-incremental head does not have: it is not reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from citkit.eval import metrics as cl


@dataclass(frozen=True)
class StageResult:
    """Scores after stage `stage` (1-based): pooled accuracy, per-task accuracies, bias."""

    stage: int
    pooled: float
    per_task: list[float]          # tasks 1..stage
    old_to_new: float | None       # share (%) of old-class test images predicted as a new class
    samples: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def stage_result(stage: int, predictions: np.ndarray, labels: np.ndarray, task_classes: list[list[int]]) -> StageResult:
    """Score one stage from predictions and labels of every test image of the `stage` first tasks."""
    if len(predictions) != len(labels) or not len(labels):
        raise ValueError(f"stage {stage}: {len(predictions)} predictions for {len(labels)} labels")
    correct = predictions == labels
    per_task = []
    for classes in task_classes[:stage]:
        members = np.isin(labels, classes)
        per_task.append(100.0 * float(correct[members].mean()))
    bias = None
    if stage >= 2:
        new = task_classes[stage - 1]
        old = ~np.isin(labels, new)
        bias = 100.0 * float(np.isin(predictions[old], new).mean())
    return StageResult(stage, 100.0 * float(correct.mean()), per_task, bias, int(len(labels)))


@dataclass(frozen=True)
class CILMetrics:
    """Pooled Avg and Last, task-averaged MAA and MFN, BWT, Forgetting, and the head's bias."""

    avg: float | None            # mean over stages of pooled accuracy
    last: float | None           # pooled accuracy after the last stage
    task_avg: float | None       # MAA of the task matrix
    task_last: float | None      # MFN of the task matrix
    bwt: float | None
    forgetting: float | None
    last_old_to_new: float | None  # bias after the last stage
    mean_old_to_new: float | None  # mean bias over stages 2..T

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


METRIC_LABELS = {"avg": "Avg (pooled)", "last": "Last (pooled)", "task_avg": "MAA (task-avg)",
                 "task_last": "MFN (task-avg)", "bwt": "BWT", "forgetting": "Forgetting",
                 "last_old_to_new": "old->new % (last)", "mean_old_to_new": "old->new % (mean)"}


def task_matrix(stages: list[StageResult], tasks: int) -> list[list[float | None]]:
    """Rows 0..T (row 0, the zero-shot row, is empty in CIL), columns tasks; above the diagonal empty."""
    rows: list[list[float | None]] = [[None] * tasks]
    for result in stages:
        rows.append(list(result.per_task) + [None] * (tasks - len(result.per_task)))
    return rows


def cil_metrics(stages: list[StageResult], tasks: int) -> CILMetrics:
    """Metrics over the finished stages (Avg over those; the task metrics once all T are done)."""
    if not stages:
        return CILMetrics(None, None, None, None, None, None, None, None)
    pooled = [s.pooled for s in stages]
    biases = [s.old_to_new for s in stages if s.old_to_new is not None]
    matrix = task_matrix(stages, tasks)
    complete = len(stages) == tasks
    # the task metrics read rows 1..T only; row 0 (empty) is never touched by MAA, MFN, BWT, Forgetting
    return CILMetrics(float(np.mean(pooled)), pooled[-1],
                      cl.maa(matrix) if complete else None, cl.mfn(matrix) if complete else None,
                      cl.bwt(matrix) if complete else None, cl.forgetting(matrix) if complete else None,
                      stages[-1].old_to_new, float(np.mean(biases)) if biases else None)
