"""Metrics on hand-computed matrices, including the undefined cases."""

import pytest

from citkit.eval.matrix import AccuracyMatrix
from citkit.eval.metrics import all_metrics, bwt, forgetting, fwt, maa, mfn, mft

# rows: base, after task 1, after task 2, after task 3; columns: tasks 1..3
A = [
    [10.0, 20.0, 30.0],
    [80.0, 25.0, 35.0],
    [60.0, 90.0, 40.0],
    [50.0, 70.0, 100.0],
]


def test_values_by_hand() -> None:
    assert mft(A) == pytest.approx((80 + 90 + 100) / 3)
    assert mfn(A) == pytest.approx((50 + 70 + 100) / 3)
    assert maa(A) == pytest.approx((80 + (60 + 90) / 2 + (50 + 70 + 100) / 3) / 3)
    assert bwt(A) == pytest.approx(((50 - 80) + (70 - 90)) / 2)
    # task 1: max over rows 1,2 = 80 -> drop 30; task 2: max over row 2 = 90 -> drop 20
    assert forgetting(A) == pytest.approx((30 + 20) / 2)
    # task 2: A[1][2] - A[0][2] = 25 - 20; task 3: A[2][3] - A[0][3] = 40 - 30
    assert fwt(A) == pytest.approx((5 + 10) / 2)


def test_forgetting_uses_best_earlier_score_not_the_diagonal() -> None:
    matrix = [[0, 0], [40, 0], [90, 50], [10, 50]]  # 3 rows after base but 2 columns would be wrong
    square = [[0, 0, 0], [40, 0, 0], [90, 50, 0], [10, 50, 70]]
    assert forgetting(square) == pytest.approx(((90 - 10) + (50 - 50)) / 2)
    assert bwt(square) == pytest.approx(((10 - 40) + (50 - 50)) / 2)
    assert len(matrix) == 4


def test_undefined_with_fewer_than_two_tasks() -> None:
    one = [[5.0], [60.0]]
    metrics = all_metrics(one)
    assert metrics.bwt is None and metrics.forgetting is None and metrics.fwt is None
    assert metrics.mft == 60.0 and metrics.mfn == 60.0 and metrics.maa == 60.0
    assert all(v is None for v in all_metrics([[5.0]]).as_dict().values())


def test_matrix_partial_rows_and_roundtrip(tmp_path) -> None:
    matrix = AccuracyMatrix.empty(["a", "b", "c"])
    assert matrix.finished_rows == 0
    matrix.set_row(0, {"a": 1.0, "b": 2.0, "c": 3.0})
    matrix.set_row(1, {"a": 50.0, "b": 2.0, "c": 3.0})
    assert matrix.finished_rows == 2 and not matrix.is_complete
    assert matrix.metrics().bwt is None  # one finished task only
    matrix.save(tmp_path)
    loaded = AccuracyMatrix.load(tmp_path)
    assert loaded.rows == matrix.rows and loaded.task_names == ["a", "b", "c"]
    assert (tmp_path / "matrix.csv").read_text().splitlines()[2].startswith("a,50.00")
