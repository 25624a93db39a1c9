"""The grounding scorer: the answer is a box [x1, y1, x2, y2]; correct when IoU with the reference > 0.5.

This is the referring-expression rule of CoIN's Grounding task (RefCOCO/+/g) and FCIT. Boxes are read
robustly from free text: the first four numbers in the answer, whatever the brackets or separators
("[0.1, 0.2, 0.5, 0.6]", "(12,30),(50,77)", "x1=0.1 y1=0.2 ..."). Coordinates may be normalised or in
pixels, as long as prediction and reference use the same convention. A prediction without four
numbers, or with x2 < x1 or y2 < y1, scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from citkit.eval.scorers import per_sample_scorer

_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
IOU_THRESHOLD = 0.5

Box = tuple[float, float, float, float]


def parse_box(text: str) -> Box | None:
    """The first four numbers of `text` as (x1, y1, x2, y2), or None when there are fewer than four."""
    numbers = _NUMBER.findall(text)
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = (float(n) for n in numbers[:4])
    return x1, y1, x2, y2


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two corner-format boxes; 0 for a degenerate (inverted) box."""
    if a[2] < a[0] or a[3] < a[1] or b[2] < b[0] or b[3] < b[1]:
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@per_sample_scorer("grounding")
def grounding(prediction: str, references: Sequence[str]) -> float:
    """1 when the predicted box overlaps a reference box with IoU > 0.5, else 0."""
    box = parse_box(prediction)
    if box is None:
        return 0.0
    refs = [b for b in (parse_box(r) for r in references) if b is not None]
    return float(any(box_iou(box, ref) > IOU_THRESHOLD for ref in refs))
