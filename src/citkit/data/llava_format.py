"""Read and validate LLaVA-format data files.

Training file: a JSON list (or JSON lines) of `{"id", "image" (optional; a path or a list of paths,
relative to the image root), "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}, ...]}`. Test file: `{"question_id", "image", "text", "answer"}`;
the training layout is accepted for tests too (the last assistant turn is the reference). Every
problem is reported with the file, the record index and what is wrong.

An image path must stay inside its image root: an absolute path, or one whose `../` segments climb
out of the root, is refused before anything is opened (`allow_outside_root=True`, the stream setting
`stream.allow_images_outside_root`, accepts it). The check is on the path as written, so a symbolic
link inside the root that points elsewhere is allowed.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from citkit.data.samples import Sample, Turn
from citkit.data.vocabulary import check_answers
from citkit.errors import DataFormatError

IMAGE_TOKEN = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
TRAIN_FIELDS = '"id", "conversations" and, for image records, "image"'
TEST_FIELDS = '"question_id", "text", "answer" and, for image records, "image"'


def escapes_root(name: str) -> bool:
    """True when an image path is absolute or its `..` segments climb above the folder it is relative to."""
    if os.path.isabs(name) or Path(name).drive:
        return True
    depth = 0
    for part in Path(name).parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


def load_records(path: str | Path) -> list[Any]:
    """Parse a JSON list or a JSON-lines file into a list of records."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: data file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: not valid JSON or JSON lines ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


class _RecordReader:
    """Turns the records of one file into samples; raises on the first bad record, naming it."""

    def __init__(self, path: Path, image_root: Path, task: str, check_images: bool,
                 allow_outside_root: bool = False) -> None:
        self.path, self.image_root, self.task, self.check_images = path, image_root, task, check_images
        self.allow_outside_root = allow_outside_root

    def fail(self, index: int, record_id: object, problem: str) -> DataFormatError:
        ident = f" (id {record_id!r})" if record_id is not None else ""
        return DataFormatError(f"{self.path} record {index}{ident}: {problem}")

    def images(self, index: int, record: dict[str, Any], record_id: object) -> tuple[Path, ...]:
        raw = record.get("image")
        if raw is None or raw == []:
            return ()
        names = raw if isinstance(raw, list) else [raw]
        paths = []
        for name in names:
            if not isinstance(name, str) or not name:
                raise self.fail(index, record_id, f'"image" must be a path or a list of paths, got {name!r}')
            if not self.allow_outside_root and escapes_root(name):
                kind = "is absolute" if os.path.isabs(name) else "climbs out of it with '../'"
                raise self.fail(index, record_id, f"image path {name!r} {kind}; image paths must stay inside the "
                                                  f"image root {self.image_root} (set "
                                                  "stream.allow_images_outside_root=true to allow it)")
            path = (self.image_root / name).resolve()
            if not path.is_file():
                raise self.fail(index, record_id, f"image file not found: {path}")
            if self.check_images:
                try:
                    with Image.open(path) as image:
                        image.verify()
                except (UnidentifiedImageError, OSError) as error:
                    raise self.fail(index, record_id, f"unreadable image {path}: {error}") from None
            paths.append(path)
        return tuple(paths)

    def check_placeholders(self, index: int, record_id: object, turns: list[Turn], n_images: int) -> None:
        found = sum(t.text.count(IMAGE_TOKEN) for t in turns if t.role == "user")
        if found != n_images:
            raise self.fail(index, record_id, f"{found} {IMAGE_TOKEN} placeholder(s) in the user turns "
                                              f"but {n_images} image(s); they must match")

    def train(self, index: int, record: Any) -> Sample:
        if not isinstance(record, dict):
            raise self.fail(index, None, f"expected an object with {TRAIN_FIELDS}, got {type(record).__name__}")
        record_id = record.get("id")
        if record_id is None:
            raise self.fail(index, None, f'no "id" field; LLaVA training records need {TRAIN_FIELDS}')
        conversations = record.get("conversations")
        if not isinstance(conversations, list) or not conversations:
            raise self.fail(index, record_id, f'no "conversations" list; LLaVA training records need {TRAIN_FIELDS}')
        turns = []
        for k, message in enumerate(conversations):
            role = ROLES.get(message.get("from", "")) if isinstance(message, dict) else None
            value = message.get("value") if isinstance(message, dict) else None
            if role is None or not isinstance(value, str):
                raise self.fail(index, record_id, f'conversation turn {k} needs "from" (human or gpt) and a '
                                                  f'string "value", got {message!r}')
            if role == "assistant" and not value.strip():
                raise self.fail(index, record_id, f"conversation turn {k} has an empty answer")
            turns.append(Turn(role, value))
        if not any(t.role == "assistant" for t in turns):
            raise self.fail(index, record_id, 'no assistant ("gpt") turn: there is nothing to learn')
        images = self.images(index, record, record_id)
        self.check_placeholders(index, record_id, turns, len(images))
        return Sample(str(record_id), images, tuple(turns), task=self.task, file=str(self.path), record=index)

    def test(self, index: int, record: Any) -> Sample:
        if isinstance(record, dict) and "conversations" in record and "question_id" not in record:
            sample = self.train(index, record)
            last = max(i for i, t in enumerate(sample.turns) if t.role == "assistant")
            answer = sample.turns[last].text.strip()
            return replace(sample, turns=sample.turns[:last], answer=answer, answers=(answer,))
        if not isinstance(record, dict):
            raise self.fail(index, None, f"expected an object with {TEST_FIELDS}, got {type(record).__name__}")
        record_id = record.get("question_id", record.get("id"))
        if record_id is None:
            raise self.fail(index, None, f'no "question_id" field; test records need {TEST_FIELDS}')
        text = record.get("text", record.get("question"))
        if not isinstance(text, str) or not text.strip():
            raise self.fail(index, record_id,
                            f'no question: "text" is missing or empty; test records need {TEST_FIELDS}')
        answers = record.get("answers", record.get("answer"))
        answers = answers if isinstance(answers, list) else [answers]
        answers = [a["answer"] if isinstance(a, dict) and "answer" in a else a for a in answers]
        if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise self.fail(index, record_id, f'empty or missing "answer" (got {record.get("answer")!r})')
        images = self.images(index, record, record_id)
        if images and IMAGE_TOKEN not in text:  # LLaVA test files keep the placeholder out of "text"
            text = f"{IMAGE_TOKEN * len(images)}\n{text}"
        turns = (Turn("user", text),)
        self.check_placeholders(index, record_id, list(turns), len(images))
        return Sample(str(record_id), images, turns, answers[0].strip(), tuple(a.strip() for a in answers), self.task,
                      str(self.path), index)


def _read(path: str | Path, image_root: str | Path | None, task: str, check_images: bool, kind: str,
          allow_outside_root: bool = False) -> list[Sample]:
    path = Path(path)
    reader = _RecordReader(path, Path(image_root) if image_root is not None else path.parent, task, check_images,
                           allow_outside_root)
    parse = reader.train if kind == "train" else reader.test
    samples = [parse(i, record) for i, record in enumerate(load_records(path))]
    seen: dict[str, int] = {}
    for i, sample in enumerate(samples):
        if sample.id in seen:
            raise reader.fail(i, sample.id, f"duplicate id (first used by record {seen[sample.id]}); "
                                            "ids join predictions to answers and must be unique")
        seen[sample.id] = i
    if not samples:
        raise DataFormatError(f"{path}: the file holds no records")
    return samples


def read_train(path: str | Path, image_root: str | Path | None = None, task: str = "",
               check_images: bool = True, allow_outside_root: bool = False) -> list[Sample]:
    """Read and validate a training file; image paths are relative to `image_root` (default: its folder)
    and must stay inside it unless `allow_outside_root`."""
    return _read(path, image_root, task, check_images, "train", allow_outside_root)


def read_test(path: str | Path, image_root: str | Path | None = None, task: str = "",
              check_images: bool = True, allow_outside_root: bool = False) -> list[Sample]:
    """Read and validate a test file (test layout or training layout)."""
    return _read(path, image_root, task, check_images, "test", allow_outside_root)


def check_file(path: str | Path, kind: str = "train", image_root: str | Path | None = None,
               check_images: bool = True, task: str = "", allow_outside_root: bool = False,
               tokenizer: Any = None) -> list[str]:
    """Every problem of a data file, one line each (file, record, what is wrong); [] when it is clean.

    With a `tokenizer` (or processor), answers it cannot represent are problems too, each with its record,
    followed by the share of the file's answers they are (`citkit.data.vocabulary`)."""
    path = Path(path)
    try:
        records = load_records(path)
    except DataFormatError as error:
        return [str(error)]
    reader = _RecordReader(path, Path(image_root) if image_root is not None else path.parent, task, check_images,
                           allow_outside_root)
    parse = reader.train if kind == "train" else reader.test
    problems, seen, samples = [], {}, []
    for i, record in enumerate(records):
        try:
            sample = parse(i, record)
        except DataFormatError as error:
            problems.append(str(error))
            continue
        if sample.id in seen:
            problems.append(str(reader.fail(i, sample.id, f"duplicate id (first used by record {seen[sample.id]})")))
        seen.setdefault(sample.id, i)
        samples.append(sample)
    if not records:
        problems.append(f"{path}: the file holds no records")
    if tokenizer is not None:
        problems += check_answers(samples, tokenizer).lines()
    return problems
