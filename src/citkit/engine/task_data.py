"""A task as the engine sees it: samples plus cached encodings and batch iterators.

Hooks receive `TaskData`, so a method can run its own passes over a task (Fisher importance, anchor
features) with `task.batches(...)` without knowing how samples become tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from citkit.data.encoding import Encoded, SampleEncoder, collate
from citkit.data.samples import Sample, Task


class EncodingCache:
    """Encodes each sample once per run (train and prompt forms kept apart)."""

    def __init__(self, encoder: SampleEncoder) -> None:
        self.encoder = encoder
        self._cache: dict[tuple[str, str, str], Encoded] = {}

    @property
    def pad_id(self) -> int:
        return int(self.encoder.tokenizer.pad_token_id)

    def train(self, sample: Sample) -> Encoded:
        key = ("train", sample.task, sample.id)
        if key not in self._cache:
            self._cache[key] = self.encoder.encode_train(sample)
        return self._cache[key]

    def prompt(self, sample: Sample) -> Encoded:
        key = ("prompt", sample.task, sample.id)
        if key not in self._cache:
            self._cache[key] = self.encoder.encode_prompt(sample)
        return self._cache[key]


@dataclass
class TaskData:
    """One task of the stream with its position and access to encoded batches."""

    task: Task
    index: int
    cache: EncodingCache = field(repr=False)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def train(self) -> list[Sample]:
        return self.task.train

    @property
    def test(self) -> list[Sample]:
        return self.task.test

    def batches(self, batch_size: int, samples: Sequence[Sample] | None = None,
                generator: torch.Generator | None = None, limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Training batches (right-padded, with labels) over `samples` (default: the task's train set).

        With a `generator` the order is shuffled; `limit` caps the number of samples used."""
        samples = list(samples if samples is not None else self.train)
        order = torch.randperm(len(samples), generator=generator).tolist() if generator else range(len(samples))
        order = list(order)[:limit] if limit is not None else list(order)
        for start in range(0, len(order), batch_size):
            chunk = [self.cache.train(samples[i]) for i in order[start:start + batch_size]]
            yield collate(chunk, self.cache.pad_id, "right")
