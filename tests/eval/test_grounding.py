"""Grounding: boxes parsed from free text, correct when IoU > 0.5 (hand-computed)."""

from __future__ import annotations

import pytest

from citkit.eval.grounding import box_iou, parse_box
from citkit.eval.scorers import score_task


def test_parse_box_reads_the_first_four_numbers() -> None:
    assert parse_box("[0.1, 0.2, 0.5, 0.6]") == (0.1, 0.2, 0.5, 0.6)
    assert parse_box("The box is (12,30),(50,77).") == (12, 30, 50, 77)
    assert parse_box("x1=.5 y1=1e-1 x2=1 y2=2 extra 9") == (0.5, 0.1, 1, 2)
    assert parse_box("[0.1, 0.2, 0.5]") is None
    assert parse_box("no box") is None


def test_iou_hand_computed() -> None:
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((2, 2, 0, 0), (0, 0, 2, 2)) == 0.0  # inverted box


def test_grounding_threshold_is_strictly_above_half() -> None:
    refs = {"1": ("[0, 0, 10, 10]",), "2": ("[0, 0, 10, 10]",), "3": ("[0, 0, 10, 10]",), "4": ("[0, 0, 10, 10]",)}
    preds = {
        "1": "[0, 0, 10, 6]",   # IoU 60/100 = 0.6 -> correct
        "2": "[0, 0, 10, 5]",   # IoU 50/100 = 0.5 -> not > 0.5
        "3": "I cannot tell",   # no box
        "4": "[5, 0, 15, 10]",  # IoU 50/150 = 1/3
    }
    scores = score_task("grounding", preds, refs)
    assert scores.per_sample == {"1": 1.0, "2": 0.0, "3": 0.0, "4": 0.0}
    assert scores.score == 25.0
