"""Samples, tasks and streams: the data vocabulary of citkit.

A *sample* is one record of a data file: an image (or none) and a conversation. A training sample's
conversation alternates user and assistant turns (loss goes on the assistant turns only); a test
sample has one user turn and a reference `answer`. A *task* is a named pair of train and test sample
lists with the scorer that judges its answers. A *stream* is the ordered list of tasks of a continual
run. Sample ids travel from the data file to the prediction file to the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. `text` may contain the image placeholder `<image>`."""

    role: Role
    text: str


@dataclass(frozen=True)
class Sample:
    """One record: a conversation about zero or more images, and for tests the reference answer(s).

    Attributes:
        id: unique within its file; predictions and scores are joined on it.
        images: absolute paths of the images, in placeholder order.
        turns: the conversation; a test sample has the prompt only.
        answer: reference answer of a test sample (None for training samples).
        answers: all references when a dataset gives several (VQA accuracy); else (answer,).
        task: name of the task the sample belongs to.
        file: the data file the record came from ("" for samples made in code).
        record: the record's index in that file (-1 for samples made in code); with `file`, what error
            messages and reports name.
    """

    id: str
    images: tuple[Path, ...]
    turns: tuple[Turn, ...]
    answer: str | None = None
    answers: tuple[str, ...] = ()
    task: str = ""
    file: str = ""
    record: int = -1

    @property
    def where(self) -> str:
        """'FILE record N (id X)', as error messages name a record."""
        return f"{self.file or '(no file)'} record {self.record} (id {self.id!r})"

    @property
    def prompt(self) -> str:
        """Text of the first user turn (the question of a test sample)."""
        return next(t.text for t in self.turns if t.role == "user")


@dataclass(frozen=True)
class TestPart:
    """The test samples of one dataset inside a task that unites several (FCIT capability stages)."""

    name: str
    scorer: str
    ids: tuple[str, ...]


@dataclass
class Task:
    """One task of a stream: training samples, test samples and how answers are judged.

    `test_parts` is empty unless the task unites datasets judged by different scorers; then each
    part is scored with its own scorer and the task score is the mean of the parts' scores."""

    name: str
    train: list[Sample]
    test: list[Sample]
    scorer: str = "exact"
    max_new_tokens: int = 16
    description: str = ""
    test_parts: tuple[TestPart, ...] = ()


@dataclass
class Stream:
    """An ordered list of tasks; the continual run visits them in order."""

    name: str
    tasks: list[Task]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def __len__(self) -> int:
        return len(self.tasks)
