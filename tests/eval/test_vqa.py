"""VQA accuracy: min(#annotators agreeing / 3, 1), hand-computed."""

from __future__ import annotations

import pytest

from citkit.eval.scorers import score_task


def test_vqa_accuracy_counts_annotator_votes() -> None:
    annotators = ("two", "two", "2", "two", "three", "2", "two", "Two", "2", "a few")
    preds = {"q1": "two", "q2": "2", "q3": "three", "q4": "four", "q5": " A few "}
    refs = {q: annotators for q in preds}
    scores = score_task("vqa-accuracy", preds, refs)
    # "two"/"Two" x5 -> 1; "2" x3 -> 1; "three" x1 -> 1/3; "four" x0 -> 0; "a few" x1 -> 1/3
    assert scores.per_sample == pytest.approx({"q1": 1.0, "q2": 1.0, "q3": 1 / 3, "q4": 0.0, "q5": 1 / 3})
    assert scores.score == pytest.approx(100 * (1 + 1 + 1 / 3 + 0 + 1 / 3) / 5)


def test_two_votes_give_two_thirds() -> None:
    assert score_task("vqa-accuracy", {"q": "yes"}, {"q": ("yes", "no", "yes", "no")}).score == pytest.approx(200 / 3)
