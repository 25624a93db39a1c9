"""CIL metrics by hand: pooled accuracy, per-task accuracies, old->new bias, Avg/Last, task matrix."""

from __future__ import annotations

import numpy as np

from citkit.cil.metrics import cil_metrics, stage_result, task_matrix

TASKS = [[0, 1], [2, 3]]


def test_stage_result_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    predictions = np.array([0, 2, 1, 3, 2, 2, 3, 0])  # old: 2 of 4 right, 2 of 4 predicted as new classes
    result = stage_result(2, predictions, labels, TASKS)
    assert result.pooled == 5 / 8 * 100
    assert result.per_task == [50.0, 75.0]
    assert result.old_to_new == 50.0
    assert stage_result(1, np.array([0, 1]), np.array([0, 0]), TASKS).old_to_new is None


def test_avg_last_and_task_metrics() -> None:
    first = stage_result(1, np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), TASKS)  # 100
    second = stage_result(2, np.array([0, 2, 1, 3, 2, 2, 3, 0]), np.array([0, 0, 1, 1, 2, 2, 3, 3]), TASKS)
    metrics = cil_metrics([first, second], 2)
    assert metrics.avg == (100 + 62.5) / 2 and metrics.last == 62.5
    assert metrics.task_last == (50 + 75) / 2 and metrics.task_avg == (100 + 62.5) / 2
    assert metrics.bwt == -50.0 and metrics.forgetting == 50.0
    assert metrics.last_old_to_new == 50.0 and metrics.mean_old_to_new == 50.0
    assert task_matrix([first], 2) == [[None, None], [100.0, None]]
    partial = cil_metrics([first], 2)  # task metrics need every stage; fewer than two tasks: undefined
    assert partial.last == 100.0 and partial.bwt is None and partial.task_last is None
