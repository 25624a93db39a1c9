"""Class order (PILOT's seed 1993), task splits and bad stream settings."""

from __future__ import annotations

import numpy as np
import pytest

from citkit.cil.stream import CILDataConfig, ImageTransform, build_stream, class_order, split_classes
from citkit.errors import ConfigError, UnknownNameError


def test_class_order_is_pilots_seeded_permutation() -> None:
    np.random.seed(1993)
    assert class_order(100, 1993) == np.random.permutation(100).tolist()
    assert class_order(5, None) == [0, 1, 2, 3, 4]


def test_classes_split_evenly_into_contiguous_tasks() -> None:
    assert split_classes(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [len(g) for g in split_classes(7, 3)] == [3, 2, 2]
    with pytest.raises(ConfigError, match="3 classes cannot be split into 5 tasks"):
        split_classes(3, 5)


def test_stream_tasks_hold_their_classes_images() -> None:
    stream = build_stream(CILDataConfig(classes=6, tasks=3, train_per_class=4, test_per_class=2), ImageTransform(16))
    assert [t.classes for t in stream.tasks] == [[0, 1], [2, 3], [4, 5]]
    labels = stream.tasks[0].train_images.labels()
    for task in stream.tasks:
        assert sorted(set(labels[task.train_indices].tolist())) == task.classes
        assert len(task.train_indices) == 8 and len(task.test_indices) == 4
    batch = next(stream.tasks[1].batches(3))
    assert batch["pixel_values"].shape == (3, 3, 16, 16)
    assert set(batch["labels"].tolist()) <= {2, 3}


def test_bad_stream_settings_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="unknown CIL dataset 'cifar10'"):
        CILDataConfig(dataset="cifar10")
    with pytest.raises(ConfigError, match="data.tasks must be >= 1"):
        CILDataConfig(tasks=0)
    with pytest.raises(ConfigError, match="data.classes 40: dataset builtin has only 20"):
        build_stream(CILDataConfig(classes=40, train_per_class=2, test_per_class=1), ImageTransform(16))


def test_without_an_order_seed_the_dataset_order_is_kept() -> None:
    config = CILDataConfig(classes=4, tasks=2, train_per_class=2, test_per_class=1, class_order_seed=None)
    from citkit.cil.images import BUILTIN_STREAM_CLASSES

    stream = build_stream(config, ImageTransform(16))
    assert stream.class_names == [c.name for c in BUILTIN_STREAM_CLASSES[:4]]
    shuffled = build_stream(CILDataConfig(classes=4, tasks=2, train_per_class=2, test_per_class=1), ImageTransform(16))
    order = class_order(20, 1993)[:4]
    assert shuffled.class_names == [BUILTIN_STREAM_CLASSES[i].name for i in order]
