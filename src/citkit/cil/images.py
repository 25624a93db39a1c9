"""The built-in class-incremental images: one coloured shape on a noisy background, 32 x 32 RGB.

A class is a (shape, colour) pair: 8 shapes x 8 colours = 64 classes. They are split once, by a fixed
rule, into two disjoint families:

- **pretraining classes** (`PRETRAIN_CLASSES`, 32): those with (shape index + colour index) even. The
  tiny ViT is pretrained on them only (`citkit.cil.pretrain`).
- **stream classes** (`STREAM_CLASSES`, 32): the others. The built-in CIL stream draws its 20 classes
  (`BUILTIN_STREAM_CLASSES`) from these only.

So no class of the continual stream was ever seen during pretraining (the leakage the DESIRE paper
warns about), while every shape and every colour was: the backbone has learned to see shapes and
colours, not the stream's classes. The images themselves are also disjoint: an image is a pure
function of (class, split, index, seed) and the pretraining split names ("pretrain-train",
"pretrain-test") differ from the stream's ("train", "test"). `tests/cil/test_cil_images.py` checks both.

This module is citkit's own and independent of the LLaVA toy world (`citkit.data.toy`), so changes to
that world do not move these images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "diamond", "bar", "x")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45), "orange": (235, 140, 30), "yellow": (225, 215, 50), "green": (50, 175, 70),
    "cyan": (50, 195, 205), "blue": (55, 85, 225), "purple": (150, 65, 205), "white": (235, 235, 235),
}
SPLITS = ("train", "test", "pretrain-train", "pretrain-test")


@dataclass(frozen=True)
class ShapeClass:
    shape: str
    colour: str

    @property
    def name(self) -> str:
        return f"{self.colour}-{self.shape}"


ALL_CLASSES: tuple[ShapeClass, ...] = tuple(ShapeClass(s, c) for s in SHAPES for c in COLOURS)
_COLOUR_INDEX = {c: i for i, c in enumerate(COLOURS)}
_SHAPE_INDEX = {s: i for i, s in enumerate(SHAPES)}


def is_pretraining_class(cls: ShapeClass) -> bool:
    """The fixed rule that splits the 64 classes into two disjoint halves."""
    return (_SHAPE_INDEX[cls.shape] + _COLOUR_INDEX[cls.colour]) % 2 == 0


PRETRAIN_CLASSES: tuple[ShapeClass, ...] = tuple(c for c in ALL_CLASSES if is_pretraining_class(c))
STREAM_CLASSES: tuple[ShapeClass, ...] = tuple(c for c in ALL_CLASSES if not is_pretraining_class(c))
# The built-in stream: the first 20 stream classes (5 shapes x 4 colours), 5 tasks of 4 by default.
BUILTIN_STREAM_CLASSES: tuple[ShapeClass, ...] = STREAM_CLASSES[:20]


def _rng(cls: ShapeClass, split: str, index: int, seed: int) -> np.random.Generator:
    key = f"{cls.name}|{split}|{index}|{seed}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def _mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) bool mask of `shape`, centred, with a random small rotation for the line shapes."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2.0
    dy, dx = (y - c) / (size / 2.0), (x - c) / (size / 2.0)  # in [-1, 1]
    angle = rng.uniform(-0.35, 0.35)
    ry, rx = dy * np.cos(angle) - dx * np.sin(angle), dy * np.sin(angle) + dx * np.cos(angle)
    radius = np.sqrt(dy ** 2 + dx ** 2)
    if shape == "circle":
        return radius <= 0.9
    if shape == "ring":
        return (radius <= 0.95) & (radius >= 0.55)
    if shape == "square":
        return (np.abs(ry) <= 0.8) & (np.abs(rx) <= 0.8)
    if shape == "diamond":
        return np.abs(ry) + np.abs(rx) <= 0.95
    if shape == "triangle":
        return (ry >= -0.85) & (ry <= 0.85) & (np.abs(rx) <= (ry + 0.85) / 1.7 * 0.9)
    if shape == "cross":
        return ((np.abs(ry) <= 0.28) & (np.abs(rx) <= 0.95)) | ((np.abs(rx) <= 0.28) & (np.abs(ry) <= 0.95))
    if shape == "bar":
        return (np.abs(ry) <= 0.3) & (np.abs(rx) <= 0.95)
    if shape == "x":
        return ((np.abs(ry - rx) <= 0.35) | (np.abs(ry + rx) <= 0.35)) & (radius <= 1.0)
    raise ValueError(f"unknown shape {shape!r}")


def render(cls: ShapeClass, split: str, index: int, seed: int = 0) -> np.ndarray:
    """(32, 32, 3) uint8 image number `index` of class `cls` in `split`: a pure function of its arguments.

    Variation: object size 12-22 px and position, small rotation, colour jitter of +-25 per channel,
    a random dark background tint, Gaussian pixel noise (sigma 18) and one grey distractor blob."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {SPLITS}")
    rng = _rng(cls, split, index, seed)
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    image[:] = rng.integers(10, 80, size=3)
    blob = int(rng.integers(4, 8))
    by, bx = rng.integers(0, IMAGE_SIZE - blob, size=2)
    image[by:by + blob, bx:bx + blob] = rng.integers(80, 140)
    size = int(rng.integers(12, 23))
    top, left = rng.integers(0, IMAGE_SIZE - size + 1, size=2)
    colour = np.clip(np.array(COLOURS[cls.colour], dtype=np.float32) + rng.uniform(-25, 25, size=3), 0, 255)
    region = image[top:top + size, left:left + size]
    region[_mask(cls.shape, size, rng)] = colour
    image += rng.normal(0.0, 18.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_many(classes: tuple[ShapeClass, ...] | list[ShapeClass], split: str, per_class: int,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32, 32, 3) uint8 images and (n,) int64 labels (index into `classes`), class-major order."""
    images = [render(c, split, i, seed) for c in classes for i in range(per_class)]
    labels = [k for k in range(len(classes)) for _ in range(per_class)]
    return np.stack(images), np.asarray(labels, dtype=np.int64)
