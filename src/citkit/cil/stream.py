"""A class-incremental stream: a dataset's classes in a seeded order, split into T tasks.

No task id is used at test time: the test set of stage t is every test image of every class seen so
far, and the model predicts among all of them. Global labels are positions in the class order, so task
t's classes are a contiguous range and the classifier's columns follow the order in which classes
arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from citkit.cil.datasets import LOADERS, ClassDataset, ImageSet, LoadOptions
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.errors import ConfigError

PILOT_ORDER_SEED = 1993  # LAMDA-PILOT shuffles class orders with np.random.seed(1993)


@dataclass(frozen=True)
class CILDataConfig:
    """Which images, and how their classes are split into tasks."""

    dataset: str = field(default="builtin", metadata={"help": (
        "builtin (leakage-free shapes), digits (scikit-learn), imagefolder, cifar100, tinyimagenet, imagenet-r, "
        "imagenet-380 (local folders; see citkit.cil.datasets for each layout).")})
    root: str | None = field(default=None, metadata={"help": "Folder of a dataset read from disk."})
    tasks: int = field(default=5, metadata={"help": "Number of tasks T; classes are split as evenly as possible "
                                                     "(the first tasks get one more when T does not divide them)."})
    classes: int | None = field(default=None, metadata={"help": (
        "Use only the first this many classes of the order (default: all).")})
    class_order_seed: int | None = field(default=PILOT_ORDER_SEED, metadata={"help": (
        "Seed of the class order, np.random.RandomState(seed).permutation as in PILOT (1993); None keeps the "
        "dataset's own order.")})
    train_per_class: int = field(default=60, metadata={"help": "builtin only: training images per class."})
    test_per_class: int = field(default=30, metadata={"help": "builtin only: test images per class."})
    test_fraction: float = field(default=0.3, metadata={"help": (
        "digits and imagenet-r (no official split): share of each class kept for testing, seeded by split_seed.")})
    split_seed: int = field(default=0, metadata={"help": (
        "Seed of the builtin images and of the digits / imagenet-r train-test split (not the run seed, so "
        "every run seed sees the same data).")})

    def __post_init__(self) -> None:
        LOADERS.get(self.dataset)  # unknown names fail here, with the known ones
        if self.tasks < 1:
            raise ConfigError(f"data.tasks must be >= 1, got {self.tasks}")
        if self.classes is not None and self.classes < 1:
            raise ConfigError(f"data.classes must be >= 1 or unset, got {self.classes}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise ConfigError(f"data.train_per_class and data.test_per_class must be >= 1, got "
                              f"{self.train_per_class}, {self.test_per_class}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")


def class_order(count: int, seed: int | None) -> list[int]:
    """Dataset class indices in stream order (PILOT: `np.random.seed(seed); np.random.permutation(n)`)."""
    if seed is None:
        return list(range(count))
    return np.random.RandomState(seed).permutation(count).tolist()


def split_classes(count: int, tasks: int) -> list[list[int]]:
    """Global labels 0..count-1 split into `tasks` contiguous groups, as even as possible."""
    if count < tasks:
        raise ConfigError(f"{count} classes cannot be split into {tasks} tasks; use data.tasks <= {count}")
    return [part.tolist() for part in np.array_split(np.arange(count), tasks)]


@dataclass
class ImageTransform:
    """uint8 (H, W, 3) -> float (3, size, size): scaled to [0, 1], resized (bilinear), normalised."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __call__(self, image: np.ndarray) -> Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0  # (3, H, W)
        if pixels.shape[1:] != (self.size, self.size):
            pixels = F.interpolate(pixels[None], size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=pixels.shape[1] > self.size)[0]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (pixels - mean) / std


def collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@dataclass
class StreamImages:
    """A split's images with labels mapped to stream order (-1 for classes not in the stream)."""

    images: ImageSet
    label_map: np.ndarray  # dataset label -> global label
    transform: ImageTransform

    def labels(self) -> np.ndarray:
        return self.label_map[self.images.labels]

    def item(self, index: int) -> dict[str, Tensor]:
        return {"pixel_values": self.transform(self.images.image(index)),
                "labels": torch.tensor(int(self.label_map[self.images.labels[index]]))}


@dataclass
class CILTask:
    """One task of a class-incremental stream: what `Engine.fit_task` trains on.

    `train` holds indices into the stream's training images; `source` turns any such list (a method may
    add earlier tasks' indices, as Joint does) into batches of `pixel_values` (batch, 3, S, S) and global
    `labels` (batch,)."""

    name: str
    index: int
    classes: list[int]          # global labels introduced by this task
    train_indices: list[int]
    test_indices: list[int]
    train_images: StreamImages
    test_images: StreamImages

    @property
    def train(self) -> list[int]:
        return self.train_indices

    def source(self, samples: list[int]) -> BatchSource:
        return BatchSource(LazyDataset(samples, self.train_images.item), collate)

    def batches(self, batch_size: int, limit: int | None = None, split: str = "train") -> Iterator[dict[str, Tensor]]:
        """This task's images in order, collated (importance passes, statistics, evaluation)."""
        indices = self.train_indices if split == "train" else self.test_indices
        images = self.train_images if split == "train" else self.test_images
        indices = indices[:limit] if limit is not None else indices
        for start in range(0, len(indices), batch_size):
            yield collate([images.item(i) for i in indices[start:start + batch_size]])


@dataclass
class CILStream:
    """The tasks of a stream and the class names in stream order."""

    dataset: str
    class_names: list[str]     # global label -> name
    tasks: list[CILTask]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(config: CILDataConfig) -> ClassDataset:
    options = LoadOptions(config.root, config.split_seed, config.train_per_class, config.test_per_class,
                          config.test_fraction)
    return LOADERS.get(config.dataset)(options)


def build_stream(config: CILDataConfig, transform: ImageTransform, dataset: ClassDataset | None = None) -> CILStream:
    """Load (or take) the dataset, order its classes, split them into tasks."""
    dataset = dataset if dataset is not None else load_dataset(config)
    order = class_order(len(dataset.class_names), config.class_order_seed)
    if config.classes is not None:
        if config.classes > len(order):
            raise ConfigError(f"data.classes {config.classes}: dataset {dataset.name} has only {len(order)} classes")
        order = order[:config.classes]
    groups = split_classes(len(order), config.tasks)
    label_map = np.full(len(dataset.class_names), -1, dtype=np.int64)
    label_map[order] = np.arange(len(order))
    train, test = StreamImages(dataset.train, label_map, transform), StreamImages(dataset.test, label_map, transform)
    train_labels, test_labels = train.labels(), test.labels()
    names = [dataset.class_names[i] for i in order]
    tasks = []
    for index, classes in enumerate(groups):
        members = np.isin(train_labels, classes)
        tasks.append(CILTask(f"task{index + 1}", index, classes, np.flatnonzero(members).tolist(),
                             np.flatnonzero(np.isin(test_labels, classes)).tolist(), train, test))
    return CILStream(dataset.name, names, tasks)
