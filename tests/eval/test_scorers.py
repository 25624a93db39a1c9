"""exact and contains scorers; predictions are joined to references by id, never by order."""

import pytest

from citkit.errors import DataFormatError, UnknownNameError
from citkit.eval.scorers import score_task


def test_exact_is_case_and_space_insensitive_only() -> None:
    refs = {"1": ("Red",), "2": ("top left",), "3": ("a red circle",)}
    preds = {"3": "a red  circle", "1": " red ", "2": "top left"}
    scores = score_task("exact", preds, refs)
    assert scores.per_sample == {"1": 1.0, "2": 1.0, "3": 0.0}
    assert scores.score == pytest.approx(200 / 3)


def test_normalized_variant_drops_articles_and_punctuation() -> None:
    scores = score_task("exact-normalized", {"1": "The red circle."}, {"1": ("red circle",)})
    assert scores.score == 100.0


def test_contains_is_prediction_inside_reference() -> None:
    refs = {"1": ("the answer is 42",), "2": ("42",), "3": ("x",)}
    scores = score_task("contains", {"1": "42", "2": "the answer is 42", "3": ""}, refs)
    assert scores.per_sample == {"1": 1.0, "2": 0.0, "3": 0.0}


def test_missing_and_extra_ids_raise() -> None:
    with pytest.raises(DataFormatError, match="no prediction.*'2'"):
        score_task("exact", {"1": "a"}, {"1": ("a",), "2": ("b",)}, task="t")
    with pytest.raises(DataFormatError, match="no reference.*'9'"):
        score_task("exact", {"1": "a", "9": "b"}, {"1": ("a",)})


def test_unknown_scorer_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'exact'"):
        score_task("exakt", {}, {})
