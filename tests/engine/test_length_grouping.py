"""`train.group_by_length`: like-length batches, every sample once per epoch, a fresh seeded order each epoch."""

from __future__ import annotations

import pytest
import torch

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.world import ToyDraw
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.length_grouping import LengthGroupedBatches
from citkit.engine.task_data import EncodingCache, TaskData, token_count
from citkit.errors import ConfigError
from citkit.methods.lora_ft import LoRAFineTuning
from citkit.models.loading import load_model, load_processor
from citkit.models.lora import AdapterConfig

LENGTHS = [int(x) for x in torch.randint(5, 200, (203,), generator=torch.Generator().manual_seed(3))]


def padding_share(batches: list[list[int]]) -> float:
    """The share of the token positions computed over batches (each a list of its samples' lengths) that
    are padding: every sample is padded to its batch's longest."""
    return 1 - sum(map(sum, batches)) / sum(max(b) * len(b) for b in batches)


def as_lengths(batches: list[list[int]]) -> list[list[int]]:
    return [[LENGTHS[i] for i in b] for b in batches]


def epochs(sampler: LengthGroupedBatches, n: int) -> list[list[list[int]]]:
    return [list(sampler) for _ in range(n)]


def test_each_epoch_uses_every_sample_once_in_batches_of_batch_size() -> None:
    sampler = LengthGroupedBatches(LENGTHS, 8, torch.Generator().manual_seed(0), group=5)
    for batches in epochs(sampler, 3):
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
        assert len(batches) == len(sampler) == 26  # ceil(203 / 8)
        assert sorted(len(b) for b in batches)[1:] == [8] * 25  # one short batch: 203 = 25 x 8 + 3


def test_batches_hold_like_lengths_and_pad_far_less_than_shuffled_batches() -> None:
    sampler = LengthGroupedBatches(LENGTHS, 8, torch.Generator().manual_seed(0), group=5)
    order = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = [order[i:i + 8] for i in range(0, len(order), 8)]
    grouped = list(sampler)
    assert padding_share(as_lengths(grouped)) < 0.5 * padding_share(as_lengths(shuffled))
    # one group spanning the epoch: the batches are disjoint ranges of length
    whole = list(LengthGroupedBatches(LENGTHS, 8, torch.Generator().manual_seed(0), group=100))
    ranges = sorted((min(LENGTHS[i] for i in b), max(LENGTHS[i] for i in b)) for b in whole)
    assert all(high <= low for (_, high), (low, _) in zip(ranges, ranges[1:], strict=False))


def test_the_order_is_seeded_differs_per_epoch_and_batches_are_shuffled_across_groups() -> None:
    first = epochs(LengthGroupedBatches(LENGTHS, 8, torch.Generator().manual_seed(0), group=5), 2)
    again = epochs(LengthGroupedBatches(LENGTHS, 8, torch.Generator().manual_seed(0), group=5), 2)
    other = epochs(LengthGroupedBatches(LENGTHS, 8, torch.Generator().manual_seed(1), group=5), 1)
    assert first == again and first[0] != first[1] and first[0] != other[0]
    # groups of 5 batches, sorted longest first: without the final shuffle the batch maxima would fall in
    # runs of five; shuffled, the epoch's batch order is no such rhythm
    maxima = [max(LENGTHS[i] for i in b) for b in first[0]]
    runs = [maxima[i:i + 5] for i in range(0, 25, 5)]
    assert not all(run == sorted(run, reverse=True) for run in runs)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ConfigError, match="batch_size and group must be >= 1"):
        LengthGroupedBatches(LENGTHS, 0, torch.Generator())


# --- through the engine ---

@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiny_model_path) -> tuple[TaskData, list]:
    """Samples of three tasks (other templates, other lengths) behind one task's encoder."""
    toy = ToyDraw(train_per_task=16, test_per_task=2, seed=4)
    stream = load_stream(StreamConfig(name="toy-format", toy=toy), tmp_path_factory.mktemp("grouping"))
    cache = EncodingCache(SampleEncoder(load_processor(tiny_model_path)))
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    return tasks[0], [s for t in tasks[:3] for s in t.train]


def seen_batches(tiny_model_path, mixed, **train) -> tuple[list[list[int]], list[str]]:
    """The lengths and ids of every batch the engine trained on."""
    task, samples = mixed
    source = task.source(samples)
    lengths: list[list[int]] = []
    ids: list[str] = []

    def recording(items):
        lengths.append([token_count(e) for e in items])
        ids.extend(e.id for e in items)
        return task.collate(items)

    torch.manual_seed(0)
    method = LoRAFineTuning(adapter=AdapterConfig(dropout=0.0))
    engine = Engine(TrainConfig(progress=False, batch_size=4, epochs=2, **train), cpu=True)
    model = engine.attach(method, load_model(tiny_model_path))
    engine.train(model, method, BatchSource(source.dataset, recording, item_length=source.item_length), "mix", 5)
    return lengths, ids


def test_group_by_length_trains_on_like_length_batches_seeing_every_sample_each_epoch(tiny_model_path, mixed) -> None:
    plain, plain_ids = seen_batches(tiny_model_path, mixed)
    grouped, grouped_ids = seen_batches(tiny_model_path, mixed, group_by_length=True)
    samples = mixed[1]
    assert len(grouped) == len(plain) == 2 * len(samples) // 4
    for epoch in (grouped_ids[:len(samples)], grouped_ids[len(samples):]):
        assert sorted(epoch) == sorted(s.id for s in samples)

    assert padding_share(plain) > 0.05 and padding_share(grouped) < 0.5 * padding_share(plain)


def test_group_by_length_needs_items_with_a_length() -> None:
    from torch import nn

    model = nn.Linear(2, 2)
    method = LoRAFineTuning()
    method.attach = lambda m: m.requires_grad_(True)  # type: ignore[method-assign]
    source = BatchSource(LazyDataset(list(range(4)), lambda i: {"x": torch.zeros(2)}), lambda b: {})
    engine = Engine(TrainConfig(progress=False, max_steps=1, batch_size=2, group_by_length=True), cpu=True)
    with pytest.raises(ConfigError, match="group_by_length: this task's items have no length"):
        engine.train(engine.attach(method, model), method, source, "no-lengths", 0)
