"""Every standard continual-learning metric as a small pure function of the accuracy matrix.

`A[t][i]` is the score on task i after training through task t; row 0 is the base model. Tasks are
numbered 1..T in the formulas (shared/methods/metrics.md) and 0..T-1 in code. A metric over fewer
than two tasks is undefined and returns None (never 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

Matrix = Sequence[Sequence[float | None]]  # rows 0..T, columns 0..T-1


def _t(matrix: Matrix) -> int:
    return len(matrix) - 1


def _cell(matrix: Matrix, row: int, col: int) -> float:
    value = matrix[row][col]
    if value is None:
        raise ValueError(f"accuracy matrix cell [{row}][{col}] is missing")
    return float(value)


def mft(matrix: Matrix) -> float | None:
    """Mean fine-tune accuracy (plasticity): mean of A[i][i]."""
    T = _t(matrix)
    return sum(_cell(matrix, i, i - 1) for i in range(1, T + 1)) / T if T >= 1 else None


def mfn(matrix: Matrix) -> float | None:
    """Mean final accuracy (Last): mean of the last row."""
    T = _t(matrix)
    return sum(_cell(matrix, T, i) for i in range(T)) / T if T >= 1 else None


def maa(matrix: Matrix) -> float | None:
    """Mean average accuracy (Avg): mean over t of the mean of A[t][1..t]."""
    T = _t(matrix)
    if T < 1:
        return None
    return sum(sum(_cell(matrix, t, i) for i in range(t)) / t for t in range(1, T + 1)) / T


def bwt(matrix: Matrix) -> float | None:
    """Backward transfer: mean over i < T of A[T][i] - A[i][i]; negative means forgetting."""
    T = _t(matrix)
    if T < 2:
        return None
    return sum(_cell(matrix, T, i - 1) - _cell(matrix, i, i - 1) for i in range(1, T)) / (T - 1)


def forgetting(matrix: Matrix) -> float | None:
    """Average forgetting: mean over i < T of max_{i<=t<T} A[t][i] - A[T][i]."""
    T = _t(matrix)
    if T < 2:
        return None
    drops = [max(_cell(matrix, t, i - 1) for t in range(i, T)) - _cell(matrix, T, i - 1) for i in range(1, T)]
    return sum(drops) / (T - 1)


def fwt(matrix: Matrix) -> float | None:
    """Forward transfer: mean over tasks i >= 2 of A[i-1][i] - A[0][i] (needs the zero-shot row)."""
    T = _t(matrix)
    if T < 2:
        return None
    return sum(_cell(matrix, i - 1, i - 1) - _cell(matrix, 0, i - 1) for i in range(2, T + 1)) / (T - 1)


@dataclass(frozen=True)
class Metrics:
    """All metrics of one accuracy matrix; None where a metric is undefined (fewer than two tasks)."""

    mft: float | None
    mfn: float | None
    maa: float | None
    bwt: float | None
    forgetting: float | None
    fwt: float | None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


METRIC_LABELS = {"mft": "MFT", "mfn": "MFN (Last)", "maa": "MAA (Avg)", "bwt": "BWT", "forgetting": "Forgetting",
                 "fwt": "FWT"}


def all_metrics(matrix: Matrix) -> Metrics:
    return Metrics(mft(matrix), mfn(matrix), maa(matrix), bwt(matrix), forgetting(matrix), fwt(matrix))
