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

A task that is the union of several datasets (FCIT's capability stages) lists its files; each item is
a path or a mapping with its own `image_root`, `scorer` (test files only) and `name` (prefixes the
ids, `name/id`, so that datasets with clashing ids can share a task):

```yaml
  - name: stage1
    train: [aokvqa/train.json, {file: refcoco/train.json, image_root: coco, name: refcoco}]
    test:
      - {file: aokvqa/test.json, scorer: exact}
      - {file: refcoco/test.json, image_root: coco, scorer: grounding, name: refcoco}
```

When the test files of a task use different scorers, each file is scored with its own scorer and
the task score is the mean over its files (every dataset counts the same, whatever its size).

Built-in names: `toy` (six tasks from six visual domains, each a new skill over what the tiny base
model reads), `toy-shared` (the same six behind one instruction; only the image tells the task),
`toy-mixed` (the same six as datasets of their domain: a third of each task's questions are ones the
base already answers), and
the first world, `toy-format` / `toy-format-shared` (six answer formats over one image distribution, a
format-shift stress test; made for the model `tiny-v1`); see docs/world.md. All are exported to disk
and read back through the LLaVA reader. Packaged definitions of real streams live in
`citkit/configs/streams/` and need `data_root` pointing at the user's local copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from citkit.data.llava_format import check_file, read_test, read_train
from citkit.data.samples import Sample, Stream, Task, TestPart
from citkit.data.toy.world import TOY_STREAMS, ToyDraw, export
from citkit.errors import ConfigError, DataFormatError, UnknownNameError

BUILTIN_TOY = {name: variant for name, variant in TOY_STREAMS.items() if not name.endswith("-base")}
# The built-in default: six visual domains as datasets of their domain (docs/world.md).
DEFAULT_STREAM = "toy-mixed"
TASK_KEYS = {"name", "train", "test", "image_root", "scorer", "max_new_tokens", "description", "train_image_root",
             "test_image_root"}
PART_KEYS = {"file", "image_root", "scorer", "name"}


@dataclass(frozen=True)
class StreamConfig:
    """Which stream to run and how much of it."""

    name: str = field(default=DEFAULT_STREAM, metadata={"help": (
        "A built-in stream (toy-mixed, toy, toy-shared, toy-format, toy-format-shared), a packaged "
        "definition (list them with `citkit streams`) or "
        "the path of a stream YAML file; the run is named after the file's `name:`, not the file name.")})
    data_root: str | None = field(default=None, metadata={"help": (
        "Folder the stream file's paths are relative to (default: the stream file's folder).")})
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "Run only these tasks, in this order."})
    train_limit: int | None = field(default=None, metadata={"help": "Use at most this many training samples per task."})
    test_limit: int | None = field(default=None, metadata={"help": "Use at most this many test samples per task."})
    check_images: bool = field(default=True, metadata={"help": (
        "Open every image while loading (catches unreadable files early).")})
    allow_images_outside_root: bool = field(default=False, metadata={"help": (
        "Accept image paths that are absolute or climb out of the task's image root with '../'. False: such a "
        "record is refused (file, record, path) before the image is opened.")})
    allow_unknown_tokens: bool = field(default=False, metadata={"help": (
        "Run even when some answers cannot be represented by the model's tokenizer (they encode to the unknown "
        "token, or do not decode back to the same text), so the model can never produce them. False: the run "
        "refuses to start and names the first such record; `citkit data check STREAM --model M` lists them all.")})
    toy: ToyDraw = field(default_factory=ToyDraw, metadata={"help": "Size and seed of a built-in toy stream."})
    cache_items: int | None = field(default=4096, metadata={"help": (
        "Encoded samples (token ids and pixel tensors) kept in memory, least recently used dropped first; "
        "memory then does not grow with the stream. None keeps every one.")})


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
        toy = config.toy.world(BUILTIN_TOY[config.name])
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


def stream_title(name: str) -> str:
    """What a stream is called in run names: a stream file's `name:` (its file name's stem when it has none
    or cannot be read yet; loading reports the problem), else the built-in or packaged name itself."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        return name
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return path.stem
    title = spec.get("name") if isinstance(spec, dict) else None
    return str(title) if isinstance(title, (str, int)) and str(title).strip() else path.stem


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
        for split in ("train", "test"):
            _check_files_entry(task[split], f"{path} task {i} ({task['name']}) {split}")
    return spec


def _check_files_entry(value: Any, where: str) -> None:
    """A task's `train`/`test`: a path, or a non-empty list of paths / {file, image_root, scorer, name}."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise DataFormatError(f"{where}: an empty list; give at least one file")
    for item in items:
        if isinstance(item, dict):
            unknown = set(item) - PART_KEYS
            if "file" not in item or unknown:
                raise DataFormatError(f"{where}: a file entry needs 'file' and may have "
                                      f"{', '.join(sorted(PART_KEYS - {'file'}))}; got {item!r}")
        elif not isinstance(item, str) or not item:
            raise DataFormatError(f"{where}: expected a file path or a list of them, got {item!r}")


@dataclass(frozen=True)
class DataPart:
    """One data file of a task, with the folder its image paths are relative to."""

    file: Path
    image_root: Path
    scorer: str | None = None
    name: str | None = None


def task_parts(entry: dict[str, Any], root: Path, split: str) -> list[DataPart]:
    """The files of one split of a stream-file task entry (one for a plain path, several for a union)."""
    default_root = entry.get(f"{split}_image_root", entry.get("image_root", "."))
    items = entry[split] if isinstance(entry[split], list) else [entry[split]]
    parts = []
    for item in items:
        spec = item if isinstance(item, dict) else {"file": item}
        parts.append(DataPart(root / spec["file"], root / spec.get("image_root", default_root),
                              spec.get("scorer"), spec.get("name")))
    return parts


def task_files(entry: dict[str, Any], root: Path) -> tuple[Path, Path, Path, Path]:
    """(train file, its image root, test file, its image root) of a single-file stream-file task entry."""
    if isinstance(entry["train"], list) or isinstance(entry["test"], list):
        raise ConfigError(f"task {entry['name']!r} lists several files; use task_parts(entry, root, split)")
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
    _check_scorers(spec, path)
    tasks = []
    for name in order:
        entry = entries[name]
        scorer = str(entry.get("scorer", "exact"))
        train, _ = _read_parts(task_parts(entry, root, "train"), name, "train", config, scorer)
        test, test_parts = _read_parts(task_parts(entry, root, "test"), name, "test", config, scorer)
        tasks.append(Task(name, train, test, scorer, int(entry.get("max_new_tokens", 16)),
                          str(entry.get("description", "")), test_parts))
    metadata = {"file": str(path), "data_root": str(root), "base_model": str(spec.get("base_model", "")),
                "base_model_note": str(spec.get("base_model_note", ""))}
    return Stream(str(spec.get("name", path.stem)), tasks, metadata)


def _read_parts(parts: list[DataPart], task: str, split: str, config: StreamConfig,
                scorer: str) -> tuple[list[Sample], tuple[TestPart, ...]]:
    """Read and concatenate a split's files (the limit applies per file); ids must stay unique.

    Returns the samples and, when the files use more than one scorer, the scored parts."""
    read = read_train if split == "train" else read_test
    limit = config.train_limit if split == "train" else config.test_limit
    samples: list[Sample] = []
    scored: list[TestPart] = []
    seen: dict[str, Path] = {}
    for part in parts:
        chunk = read(part.file, part.image_root, task, config.check_images, config.allow_images_outside_root)[:limit]
        if part.name:
            chunk = [replace(s, id=f"{part.name}/{s.id}") for s in chunk]
        for sample in chunk:
            if sample.id in seen:
                raise DataFormatError(f"task {task!r}: id {sample.id!r} of {part.file} is also in {seen[sample.id]}; "
                                      "give the files of the task a `name` (ids become name/id)")
            seen[sample.id] = part.file
        scored.append(TestPart(part.name or part.file.stem, part.scorer or scorer, tuple(s.id for s in chunk)))
        samples += chunk
    mixed = len({p.scorer for p in scored}) > 1
    return samples, tuple(scored) if split == "test" and mixed else ()


def _check_scorers(spec: dict[str, Any], path: Path) -> None:
    """Fail before any training when a task names a scorer that does not exist."""
    from citkit.eval.scorers import SCORERS  # late: citkit.eval imports citkit.data

    for task in spec["tasks"]:
        items = task["test"] if isinstance(task["test"], list) else []
        names = [task.get("scorer", "exact")] + [i["scorer"] for i in items if isinstance(i, dict) and "scorer" in i]
        for name in names:
            if name not in SCORERS:
                try:
                    SCORERS.get(name)
                except UnknownNameError as error:
                    raise UnknownNameError(f"{path} task {task['name']}: {error}") from None


def check_stream(config: StreamConfig, cache_dir: str | Path, tokenizer: Any = None) -> list[str]:
    """Every problem of a stream's data files (file, record, what is wrong); [] when all is clean. With a
    `tokenizer` (or processor), answers it cannot represent too (see `citkit.data.vocabulary`)."""
    path, root = resolve_stream_file(config, cache_dir)
    spec = read_stream_file(path)
    try:
        _check_scorers(spec, path)
        problems = []
    except UnknownNameError as error:
        problems = [str(error)]
    for entry in spec["tasks"]:
        for split in ("train", "test"):
            for part in task_parts(entry, root, split):
                problems += check_file(part.file, split, part.image_root, config.check_images, entry["name"],
                                       config.allow_images_outside_root, tokenizer)
    return problems
