"""Loaders of local-disk layouts on small fake folders written here, digits, and every bad-input error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from citkit.cil.datasets import (
    LoadOptions,
    load_cifar100,
    load_digits,
    load_imagefolder,
    load_imagenet_r,
    load_imagenet_subset,
    load_tinyimagenet,
)
from citkit.errors import ConfigError, DataFormatError


def options(root: Path | None, **kw) -> LoadOptions:
    return LoadOptions(str(root) if root else None, kw.get("seed", 0), 2, 1, kw.get("test_fraction", 0.3))


def write_image(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)


def imagefolder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 2) -> Path:
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            for i in range(per_class):
                write_image(root / split / name / f"{i}.png", 40 * k + i)
    return root


def test_imagefolder_reads_classes_in_sorted_order(tmp_path: Path) -> None:
    dataset = load_imagefolder(options(imagefolder(tmp_path / "data")))
    assert dataset.class_names == ["cat", "dog", "fox"]
    assert dataset.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert dataset.train.image(2).shape == (6, 6, 3) and int(dataset.train.image(2)[0, 0, 0]) == 40


def test_imagefolder_accepts_val_instead_of_test_and_imagenet_380_uses_it(tmp_path: Path) -> None:
    root = imagefolder(tmp_path / "data")
    (root / "test").rename(root / "val")
    assert len(load_imagefolder(options(root)).test) == 6
    assert load_imagenet_subset(options(root)).class_names == ["cat", "dog", "fox"]


def test_missing_folder_unreadable_image_and_empty_class_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="does not exist"):
        load_imagefolder(options(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="data.root"):
        load_imagefolder(options(None))
    root = imagefolder(tmp_path / "bad")
    (root / "train" / "dog" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"dog/1.png: unreadable image"):
        load_imagefolder(options(root))
    root = imagefolder(tmp_path / "empty")
    for file in (root / "test" / "fox").iterdir():
        file.unlink()
    with pytest.raises(DataFormatError, match=r"fox: class 'fox' has no images"):
        load_imagefolder(options(root))
    root = imagefolder(tmp_path / "lacking")
    for file in (root / "test" / "cat").iterdir():
        file.unlink()
    (root / "test" / "cat").rmdir()
    with pytest.raises(DataFormatError, match="class folder missing"):
        load_imagefolder(options(root))


def test_cifar100_python_layout(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(4)]
    with (root / "meta").open("wb") as f:
        pickle.dump({"fine_label_names": names}, f)
    for split, n in (("train", 8), ("test", 4)):
        with (root / split).open("wb") as f:
            pixels = rng.integers(0, 255, (n, 3072), dtype=np.uint8)
            pickle.dump({"data": pixels, "fine_labels": [i % 4 for i in range(n)]}, f)
    dataset = load_cifar100(options(tmp_path))  # the parent folder works too
    assert dataset.class_names == names and len(dataset.train) == 8 and dataset.test.image(0).shape == (32, 32, 3)
    (root / "test").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="not a CIFAR-100 python pickle"):
        load_cifar100(options(root))


def test_tinyimagenet_layout(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, wnid in enumerate(wnids):
        for i in range(2):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 10 * k)
            write_image(root / "val" / "images" / f"val_{k}{i}.JPEG", 10 * k)
            lines.append(f"val_{k}{i}.JPEG\t{wnid}\t0\t0\t5\t5")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    dataset = load_tinyimagenet(options(root))
    assert dataset.class_names == wnids and len(dataset.train) == 4 and dataset.test.labels.tolist() == [0, 0, 1, 1]
    (root / "val" / "val_annotations.txt").write_text("val_00.JPEG\tn99\n")
    with pytest.raises(DataFormatError, match="val_annotations.txt line 1"):
        load_tinyimagenet(options(root))


def test_imagenet_r_layout_gets_a_seeded_split(tmp_path: Path) -> None:
    root = tmp_path / "imagenet-r"
    for k, wnid in enumerate(["n1", "n2"]):
        for i in range(10):
            write_image(root / wnid / f"{i}.jpg", 10 * k + i)
    first = load_imagenet_r(options(root, seed=0))
    again = load_imagenet_r(options(root, seed=0))
    other = load_imagenet_r(options(root, seed=1))
    assert len(first.test) == 6 and len(first.train) == 14
    assert first.test.paths == again.test.paths and first.test.paths != other.test.paths


def test_digits_ship_with_scikit_learn() -> None:
    dataset = load_digits(options(None, test_fraction=0.3))
    assert dataset.class_names == [str(d) for d in range(10)]
    assert len(dataset.train) + len(dataset.test) == 1797
    assert abs(len(dataset.test) / 1797 - 0.3) < 0.01
    assert dataset.train.image(0).shape == (8, 8, 3) and dataset.train.image(0).max() > 100
