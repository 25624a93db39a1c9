"""A task as the engine sees it: samples plus cached encodings and batch iterators.

Hooks receive `TaskData`, so a method can run its own passes over a task (Fisher importance, anchor
features) with `task.batches(...)` without knowing how samples become tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from citkit.data.encoding import Encoded, SampleEncoder, collate
from citkit.data.samples import Sample, Task, Turn
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.errors import ConfigError


class EncodingCache:
    """Encodes samples on first use and keeps at most `max_items` of them (least recently used go first).

    Memory does not grow with the data: a stream of any size holds at most `max_items` encodings (token
    ids and pixel tensors) at a time; an evicted sample is encoded again when it is next needed, which
    gives the same tensors (encoding is deterministic). Train and prompt forms are kept apart."""

    def __init__(self, encoder: SampleEncoder, max_items: int | None = 4096) -> None:
        if max_items is not None and max_items < 1:
            raise ConfigError(f"data.cache_items must be >= 1 or None (unbounded), got {max_items}")
        self.encoder = encoder
        self.max_items = max_items
        self._cache: OrderedDict[tuple[str, str, str], Encoded] = OrderedDict()
        self.encoded = 0  # encodings made so far (a re-encoded evicted sample counts again)

    @property
    def pad_id(self) -> int:
        return int(self.encoder.tokenizer.pad_token_id)

    def __len__(self) -> int:
        return len(self._cache)

    def _get(self, key: tuple[str, str, str], make: Callable[[], Encoded]) -> Encoded:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        self.encoded += 1
        self._cache[key] = value
        if self.max_items is not None and len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        return value

    def train(self, sample: Sample) -> Encoded:
        return self._get(("train", sample.task, sample.id), lambda: self.encoder.encode_train(sample))

    def prompt(self, sample: Sample) -> Encoded:
        return self._get(("prompt", sample.task, sample.id), lambda: self.encoder.encode_prompt(sample))


def token_count(encoded: Encoded) -> int:
    """The token positions an encoded sample takes in a batch (image tokens included)."""
    return len(encoded.input_ids)


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

    # --- the narrow view methods use: no reaching into the cache or the encoder ---
    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (to decode ids, list special ids, tokenize instructions)."""
        return self.cache.encoder.tokenizer

    def encode(self, sample: Sample) -> Encoded:
        """The training form of `sample` (token ids, labels on the answer, pixel values), cached."""
        return self.cache.train(sample)

    def encode_prompt(self, sample: Sample) -> Encoded:
        """The generation form of `sample` (the prompt up to the assistant turn), cached."""
        return self.cache.prompt(sample)

    def collate(self, encoded: Sequence[Encoded], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """A model batch of encoded samples (right padding for training, left for generation)."""
        return collate(encoded, self.cache.pad_id, padding_side)

    def source(self, samples: Sequence[Sample]) -> BatchSource:
        """What the engine trains on: `samples` encoded lazily (in DataLoader workers if any), collated
        with right padding; the loss averages over answer tokens."""
        return BatchSource(LazyDataset(samples, self.encode), self.collate, item_length=token_count)

    def render(self, turns: Sequence[Turn], add_generation_prompt: bool) -> str:
        """The chat template's text for `turns` (placeholders not yet expanded)."""
        return self.cache.encoder.render(turns, add_generation_prompt)

    def batches(self, batch_size: int, samples: Sequence[Sample] | None = None,
                generator: torch.Generator | None = None,
                limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Training batches (right-padded, with labels) over `samples` (default: the task's train set).

        With a `generator` the order is shuffled; `limit` caps the number of samples used."""
        samples = list(samples if samples is not None else self.train)
        order = torch.randperm(len(samples), generator=generator).tolist() if generator else range(len(samples))
        order = list(order)[:limit] if limit is not None else list(order)
        for start in range(0, len(order), batch_size):
            yield self.collate([self.encode(samples[i]) for i in order[start:start + batch_size]])
