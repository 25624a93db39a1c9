"""Batches of like-length samples: less padding per step, still a fresh random order every epoch.

A batch is padded to its longest sample, so a batch that mixes a short and a long sample computes the
long one's length for both. `LengthGroupedBatches` does what `group_by_length` does in the transformers
Trainer, with citkit's seeded generator: each epoch draws a random permutation, cuts it into groups of
`group` batches, sorts each group by length, cuts the sorted group into batches and finally shuffles
the order of all the epoch's batches (so long and short batches are not met in a fixed rhythm). Every
sample is used once per epoch; the last batch may be smaller, as with a plain shuffled DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from citkit.errors import ConfigError

GROUP_BATCHES = 50  # batches per sorted group, as the transformers Trainer's megabatches


class LengthGroupedBatches(Sampler[list[int]]):
    """A batch sampler whose batches hold samples of like length (`lengths[i]`: sample i's token count)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                 group: int = GROUP_BATCHES) -> None:
        if batch_size < 1 or group < 1:
            raise ConfigError(f"length grouping: batch_size and group must be >= 1, got {batch_size}, {group}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.group = group
        self.drop_last = False

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.batch_size * self.group
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            # stable sort, longest first: ties keep the random order
            group = sorted(order[start:start + span], key=lambda i: -self.lengths[i])
            batches.extend(group[i:i + self.batch_size] for i in range(0, len(group), self.batch_size))
        # a short remainder batch can only be the last of the last group; it stays one batch
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
