"""Streams as data: a small YAML file per stream lists each task's files, image root and scorer.

```yaml
name: my-stream
tasks:
  - name: colour
    train: colour/train.json      # relative to the data root (default: the YAML file's folder)
    test: colour/test.json
    image_root: colour            # images are relative to this folder
    scorer: exact                 # see citkit.eval.scorers
    max_new_tokens: 8
```

Built-in names: `toy` (six tasks with distinct instructions) and `toy-shared` (the same six kinds of
answer behind one shared instruction; the task shows only in the image). Both are exported to disk
and read back through the LLaVA reader. Packaged definitions of real streams live in
`citkit/configs/streams/` and need `data_root` pointing at the user's local copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from citkit.data.llava_format import read_test, read_train
from citkit.data.samples import Stream, Task
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.errors import ConfigError, DataFormatError, UnknownNameError

BUILTIN_TOY = {"toy": "distinct", "toy-shared": "shared-instruction"}
TASK_KEYS = {"name", "train", "test", "image_root", "scorer", "max_new_tokens", "description", "train_image_root",
             "test_image_root"}


@dataclass(frozen=True)
class StreamConfig:
    """Which stream to run and how much of it."""

    name: str = field(default="toy", metadata={"help": (
        "A built-in stream (toy, toy-shared), a packaged definition (see `citkit data streams`) or "
        "the path of a stream YAML file.")})
    data_root: str | None = field(default=None, metadata={"help": (
        "Folder the stream file's paths are relative to (default: the stream file's folder).")})
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "Run only these tasks, in this order."})
    train_limit: int | None = field(default=None, metadata={"help": "Use at most this many training samples per task."})
    test_limit: int | None = field(default=None, metadata={"help": "Use at most this many test samples per task."})
    check_images: bool = field(default=True, metadata={"help": "Open every image while loading (catches unreadable files early)."})
    toy: ToyWorldConfig = field(default_factory=ToyWorldConfig, metadata={"help": "Size and seed of the toy world."})


def packaged_streams() -> dict[str, Path]:
    """Stream definitions shipped with citkit, by name."""
    folder = resources.files("citkit") / "configs" / "streams"
    if not folder.is_dir():
        return {}
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def stream_names() -> list[str]:
    return sorted(BUILTIN_TOY) + sorted(packaged_streams())


def resolve_stream_file(config: StreamConfig, cache_dir: str | Path) -> tuple[Path, Path]:
    """Return (stream file, data root), exporting the toy world first if a toy stream is asked for."""
    if config.name in BUILTIN_TOY:
        toy = ToyWorldConfig(BUILTIN_TOY[config.name], config.toy.train_per_task, config.toy.test_per_task,
                             config.toy.seed)
        folder = Path(cache_dir) / f"{config.name}-seed{toy.seed}-{toy.train_per_task}x{toy.test_per_task}"
        stream_file = export(toy, folder)
        return stream_file, folder
    path = Path(config.name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"stream file {path} not found")
    else:
        packaged = packaged_streams()
        if config.name not in packaged:
            known = ", ".join(stream_names())
            raise UnknownNameError(f"unknown stream {config.name!r}; known: {known}, or a path to a stream YAML file")
        path = packaged[config.name]
        if config.data_root is None:
            raise ConfigError(f"stream {config.name!r} points at data you keep locally: pass --data-root "
                              "with the folder that holds it")
    root = Path(config.data_root) if config.data_root else path.parent
    return path, root


def read_stream_file(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DataFormatError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), list) or not spec["tasks"]:
        raise DataFormatError(f"{path}: a stream file needs a non-empty 'tasks' list")
    for i, task in enumerate(spec["tasks"]):
        if not isinstance(task, dict):
            raise DataFormatError(f"{path} task {i}: expected a mapping, got {task!r}")
        missing = {"name", "train", "test"} - set(task)
        unknown = set(task) - TASK_KEYS
        if missing:
            raise DataFormatError(f"{path} task {i}: missing {', '.join(sorted(missing))}")
        if unknown:
            raise DataFormatError(f"{path} task {i} ({task['name']}): unknown keys {', '.join(sorted(unknown))}; "
                                  f"allowed: {', '.join(sorted(TASK_KEYS))}")
    return spec


def task_files(entry: dict[str, Any], root: Path) -> tuple[Path, Path, Path, Path]:
    """(train file, its image root, test file, its image root) of one stream-file task entry."""
    image_root = entry.get("image_root", ".")
    return (root / entry["train"], root / entry.get("train_image_root", image_root),
            root / entry["test"], root / entry.get("test_image_root", image_root))


def load_stream(config: StreamConfig, cache_dir: str | Path) -> Stream:
    """Resolve, read and validate a whole stream."""
    path, root = resolve_stream_file(config, cache_dir)
    spec = read_stream_file(path)
    entries = {t["name"]: t for t in spec["tasks"]}
    order = list(config.tasks) or [t["name"] for t in spec["tasks"]]
    for name in order:
        if name not in entries:
            raise ConfigError(f"task {name!r} is not in stream {spec.get('name', path)}; it has: {', '.join(entries)}")
    tasks = []
    for name in order:
        entry = entries[name]
        train_file, train_images, test_file, test_images = task_files(entry, root)
        train = read_train(train_file, train_images, name, config.check_images)
        test = read_test(test_file, test_images, name, config.check_images)
        tasks.append(Task(name, train[: config.train_limit], test[: config.test_limit],
                          str(entry.get("scorer", "exact")), int(entry.get("max_new_tokens", 16)),
                          str(entry.get("description", ""))))
    return Stream(str(spec.get("name", path.stem)), tasks, {"file": str(path), "data_root": str(root)})
