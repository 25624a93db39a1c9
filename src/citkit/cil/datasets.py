"""Labelled image datasets for class-incremental streams: built-in, scikit-learn digits, and local disk.

Every loader returns a `ClassDataset` (class names, a train and a test `ImageSet`) and checks the data
before anything is trained or written: a missing folder, an unreadable image, a class without images
or a malformed annotation file raises `DataFormatError` naming the file and what is wrong.

Layouts read from local disk (nothing is downloaded):

- `imagefolder`: `ROOT/train/<class>/*.{png,jpg,...}` and `ROOT/test/<class>/...` (or `ROOT/val/`).
  ImageNet-380 (or any ImageNet subset) is used in this layout.
- `cifar100`: the python version, `ROOT/{train,test,meta}` as unpacked from `cifar-100-python.tar.gz`
  (or `ROOT/cifar-100-python/...`). These files are Python pickles; only open files you trust.
- `tinyimagenet`: `ROOT/wnids.txt`, `ROOT/train/<wnid>/images/*.JPEG`, `ROOT/val/images/*.JPEG` with
  `ROOT/val/val_annotations.txt` (file, wnid, box).
- `imagenet-r`: `ROOT/<wnid>/*.jpg` (200 classes, no official split); a seeded split keeps
  `test_fraction` of each class for testing (`split_seed`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from citkit.errors import ConfigError, DataFormatError
from citkit.registry import Registry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class ImageSet:
    """One split's images, in memory (`arrays`, uint8 (n, H, W, 3)) or on disk (`paths`), and labels."""

    labels: np.ndarray  # (n,) int64 index into the dataset's class names
    arrays: np.ndarray | None = None
    paths: list[Path] | None = None

    def __post_init__(self) -> None:
        if (self.arrays is None) == (self.paths is None):
            raise ValueError("an ImageSet holds either arrays or paths")
        count = len(self.arrays) if self.arrays is not None else len(self.paths or [])
        if count != len(self.labels):
            raise ValueError(f"{count} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        if self.arrays is not None:
            return self.arrays[index]
        path = (self.paths or [])[index]
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise DataFormatError(f"{path}: unreadable image ({error})") from error


@dataclass
class ClassDataset:
    """A dataset's classes and its two splits."""

    name: str
    class_names: list[str]
    train: ImageSet
    test: ImageSet

    def __post_init__(self) -> None:
        for split, images in (("train", self.train), ("test", self.test)):
            counts = np.bincount(images.labels, minlength=len(self.class_names))
            empty = [self.class_names[i] for i in np.flatnonzero(counts == 0)]
            if empty:
                raise DataFormatError(f"dataset {self.name}: class {empty[0]!r} has no {split} image "
                                      f"({len(empty)} such classes); every class needs train and test images")


@dataclass(frozen=True)
class LoadOptions:
    """What a loader may use besides its root (set from `CILDataConfig`)."""

    root: str | None
    seed: int
    train_per_class: int
    test_per_class: int
    test_fraction: float


Loader = Callable[[LoadOptions], ClassDataset]
LOADERS: Registry[Loader] = Registry("CIL dataset")


def _need_root(options: LoadOptions, name: str) -> Path:
    if not options.root:
        raise ConfigError(f"dataset {name} reads local files; set data.root to its folder")
    root = Path(options.root)
    if not root.is_dir():
        raise DataFormatError(f"dataset {name}: folder {root} does not exist")
    return root


def _check_images(paths: list[Path]) -> None:
    """Open every image header; the first unreadable one is an error naming the file."""
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise DataFormatError(f"{path}: unreadable image ({error})") from error


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path, names: list[str] | None = None) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise DataFormatError(f"folder {folder} does not exist")
    classes = names or sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataFormatError(f"{folder} has no class folders (expected {folder}/<class>/<image>)")
    out = {}
    for name in classes:
        if not (folder / name).is_dir():
            raise DataFormatError(f"{folder / name}: class folder missing (the train split has class {name!r})")
        images = _images_in(folder / name)
        if not images:
            raise DataFormatError(f"{folder / name}: class {name!r} has no images")
        out[name] = images
    return out


def _image_set(by_class: dict[str, list[Path]], names: list[str]) -> ImageSet:
    index = {n: i for i, n in enumerate(names)}
    paths = [p for n in names for p in by_class[n]]
    labels = np.asarray([index[n] for n in names for _ in by_class[n]], dtype=np.int64)
    _check_images(paths)
    return ImageSet(labels, paths=paths)


@LOADERS.register("builtin")
def load_builtin(options: LoadOptions) -> ClassDataset:
    """The leakage-free built-in shapes (`citkit.cil.images`): stream classes only."""
    from citkit.cil.images import BUILTIN_STREAM_CLASSES, render_many

    train = render_many(BUILTIN_STREAM_CLASSES, "train", options.train_per_class, options.seed)
    test = render_many(BUILTIN_STREAM_CLASSES, "test", options.test_per_class, options.seed)
    return ClassDataset("builtin", [c.name for c in BUILTIN_STREAM_CLASSES], ImageSet(train[1], arrays=train[0]),
                        ImageSet(test[1], arrays=test[0]))


@LOADERS.register("digits")
def load_digits(options: LoadOptions) -> ClassDataset:
    """scikit-learn's 1,797 handwritten 8 x 8 digits (shipped with the package); a seeded per-class split
    keeps `test_fraction` of each digit for testing."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ConfigError("dataset digits needs scikit-learn: pip install 'citkit[cil]'") from error
    data = sklearn_digits()
    images = np.clip(data.images * 16.0, 0, 255).astype(np.uint8)  # (n, 8, 8), values 0..16 -> 0..255
    images = np.repeat(images[..., None], 3, axis=-1)  # grey -> RGB
    labels = data.target.astype(np.int64)
    train_idx, test_idx = _seeded_split(labels, options.test_fraction, options.seed)
    return ClassDataset("digits", [str(d) for d in range(10)], ImageSet(labels[train_idx], arrays=images[train_idx]),
                        ImageSet(labels[test_idx], arrays=images[test_idx]))


def _seeded_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded `test_fraction` share of the indices to test (at least one each way)."""
    rng = np.random.RandomState(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        test += members[:cut].tolist()
        train += members[cut:].tolist()
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


@LOADERS.register("imagefolder")
def load_imagefolder(options: LoadOptions) -> ClassDataset:
    root = _need_root(options, "imagefolder")
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    if not (root / "train").is_dir():
        raise DataFormatError(f"dataset imagefolder: {root / 'train'} does not exist (expected ROOT/train/<class>/)")
    if not test_dir.is_dir():
        raise DataFormatError(f"dataset imagefolder: neither {root / 'test'} nor {root / 'val'} exists")
    train = _class_folders(root / "train")
    names = sorted(train)
    test = _class_folders(test_dir, names)
    return ClassDataset(f"imagefolder:{root.name}", names, _image_set(train, names), _image_set(test, names))


@LOADERS.register("imagenet-380")
def load_imagenet_subset(options: LoadOptions) -> ClassDataset:
    """ImageNet-380 (or another ImageNet subset) in the imagefolder layout (train/ and val/)."""
    return load_imagefolder(options)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataFormatError(f"dataset cifar100: file {path} does not exist")
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="latin1")  # noqa: S301 - the official CIFAR format
    except Exception as error:  # a truncated or foreign file
        raise DataFormatError(f"{path}: not a CIFAR-100 python pickle ({error})") from error


@LOADERS.register("cifar100")
def load_cifar100(options: LoadOptions) -> ClassDataset:
    root = _need_root(options, "cifar100")
    if (root / "cifar-100-python").is_dir():
        root = root / "cifar-100-python"
    names = list(_unpickle(root / "meta")["fine_label_names"])
    splits = {}
    for split in ("train", "test"):
        data = _unpickle(root / split)
        try:
            pixels = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            labels = np.asarray(data["fine_labels"], dtype=np.int64)
        except (KeyError, ValueError) as error:
            raise DataFormatError(f"{root / split}: expected 'data' (n, 3072) and 'fine_labels' ({error})") from error
        if len(labels) != len(pixels) or (len(labels) and (labels.min() < 0 or labels.max() >= len(names))):
            raise DataFormatError(f"{root / split}: {len(pixels)} images, {len(labels)} labels, or labels outside "
                                  f"0..{len(names) - 1}")
        splits[split] = ImageSet(labels, arrays=np.ascontiguousarray(pixels))
    return ClassDataset("cifar100", names, splits["train"], splits["test"])


@LOADERS.register("tinyimagenet")
def load_tinyimagenet(options: LoadOptions) -> ClassDataset:
    root = _need_root(options, "tinyimagenet")
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise DataFormatError(f"dataset tinyimagenet: {wnids_file} does not exist")
    names = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    train = {}
    for wnid in names:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataFormatError(f"dataset tinyimagenet: {folder} does not exist (class {wnid} of wnids.txt)")
        train[wnid] = _images_in(folder)
        if not train[wnid]:
            raise DataFormatError(f"{folder}: class {wnid!r} has no images")
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataFormatError(f"dataset tinyimagenet: {annotations} does not exist")
    test: dict[str, list[Path]] = {n: [] for n in names}
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in test:
            raise DataFormatError(f"{annotations} line {number}: expected 'FILE<TAB>WNID' with a wnid of wnids.txt, "
                                  f"got {line[:60]!r}")
        path = root / "val" / "images" / fields[0]
        if not path.is_file():
            raise DataFormatError(f"{annotations} line {number}: image {path} does not exist")
        test[fields[1]].append(path)
    for wnid, paths in test.items():
        if not paths:
            raise DataFormatError(f"{annotations}: class {wnid!r} has no validation image")
    return ClassDataset("tinyimagenet", names, _image_set(train, names), _image_set(test, names))


@LOADERS.register("imagenet-r")
def load_imagenet_r(options: LoadOptions) -> ClassDataset:
    root = _need_root(options, "imagenet-r")
    by_class = _class_folders(root)
    names = sorted(by_class)
    whole = _image_set(by_class, names)
    train_idx, test_idx = _seeded_split(whole.labels, options.test_fraction, options.seed)
    paths = whole.paths or []
    return ClassDataset("imagenet-r", names, ImageSet(whole.labels[train_idx], paths=[paths[i] for i in train_idx]),
                        ImageSet(whole.labels[test_idx], paths=[paths[i] for i in test_idx]))
