"""What the engine trains on: a sized dataset, how its items become a batch, and what a batch's loss averages.

The batch source is a seam: a LLaVA task gives encoded chat samples (token ids, answer labels, pixels),
the tiny model's vision warm-up gives rendered scenes with per-cell labels, a class-incremental ViT task
gives (pixel_values, labels). The engine only needs `dataset[i]`, `collate(items)` and the number of
items the base loss of a batch averages over, which makes gradient accumulation exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from citkit.data.encoding import IGNORE_INDEX
from citkit.errors import ConfigError


def loss_items(batch: dict[str, Tensor]) -> int:
    """How many items the base loss of `batch` is a mean over.

    Causal-LM labels (batch, seq): the answer tokens that predict something, i.e. `labels[:, 1:]` not
    -100 (transformers shifts labels by one inside the loss). Class labels (batch,): one per sample.
    Without labels: one per row of the first tensor."""
    labels = batch.get("labels")
    if labels is not None and labels.dim() == 2:
        return int((labels[:, 1:] != IGNORE_INDEX).sum())
    if labels is not None:
        return int(labels.shape[0])
    return int(next(iter(batch.values())).shape[0])


@dataclass
class BatchSource:
    """A map-style dataset the engine samples micro-batches from, and how items are batched."""

    dataset: Dataset[Any]
    collate: Callable[[list[Any]], dict[str, Tensor]]
    count_items: Callable[[dict[str, Tensor]], int] = loss_items
    item_length: Callable[[Any], int] | None = None  # an item's padded dimension (tokens), for length grouping

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def lengths(self) -> list[int]:
        """Every item's length (`item_length(dataset[i])`), e.g. to batch like lengths together."""
        if self.item_length is None:
            raise ConfigError("train.group_by_length: this task's items have no length (only token sequences do)")
        return [self.item_length(self.dataset[i]) for i in range(len(self))]


class LazyDataset(Dataset[Any]):
    """`items[i]` made by `make(items[i])` when the DataLoader asks for it (in a worker if there are any)."""

    def __init__(self, items: Sequence[Any], make: Callable[[Any], Any]) -> None:
        self.items = list(items)
        self.make = make

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.make(self.items[index])
