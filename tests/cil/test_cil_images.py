"""The built-in CIL images: leakage-free by construction, and a pure function of their arguments."""

from __future__ import annotations

import numpy as np

from citkit.cil.datasets import LoadOptions, load_builtin
from citkit.cil.images import ALL_CLASSES, PRETRAIN_CLASSES, STREAM_CLASSES, render


def test_pretraining_and_stream_classes_are_disjoint_and_cover_every_shape_and_colour() -> None:
    assert not {c.name for c in PRETRAIN_CLASSES} & {c.name for c in STREAM_CLASSES}
    assert len(PRETRAIN_CLASSES) + len(STREAM_CLASSES) == len(ALL_CLASSES) == 64
    for family in (PRETRAIN_CLASSES, STREAM_CLASSES):
        assert {c.shape for c in family} == {c.shape for c in ALL_CLASSES}
        assert {c.colour for c in family} == {c.colour for c in ALL_CLASSES}


def test_the_builtin_stream_uses_stream_classes_only() -> None:
    dataset = load_builtin(LoadOptions(None, 0, 2, 1, 0.3))
    assert set(dataset.class_names) <= {c.name for c in STREAM_CLASSES}
    assert not set(dataset.class_names) & {c.name for c in PRETRAIN_CLASSES}


def test_render_is_deterministic_and_splits_differ() -> None:
    cls = STREAM_CLASSES[0]
    assert np.array_equal(render(cls, "train", 3), render(cls, "train", 3))
    assert not np.array_equal(render(cls, "train", 3), render(cls, "test", 3))
    assert not np.array_equal(render(cls, "train", 3), render(cls, "train", 4))
    assert render(cls, "train", 0).shape == (32, 32, 3)
