"""Replay (citkit/methods/replay.py): the buffer's size, seeding, resume, and its use in training."""

from __future__ import annotations

import json

import pytest
import torch

from citkit.engine.task_data import TaskData
from citkit.errors import ConfigError, ResumeMismatchError
from citkit.methods.replay import Replay, ReplayConfig


def fill(method: Replay, tasks: list[TaskData]) -> None:
    for task in tasks:
        method.after_task(task, torch.nn.Module())


def test_config() -> None:
    with pytest.raises(ConfigError, match="fraction"):
        ReplayConfig(fraction=0.0)
    with pytest.raises(ConfigError, match="count"):
        ReplayConfig(count=0)
    assert ReplayConfig(fraction=0.1).kept(32) == 3 and ReplayConfig(fraction=0.01).kept(32) == 1
    assert ReplayConfig(count=5).kept(32) == 5 and ReplayConfig(count=50).kept(32) == 32


def test_buffer_keeps_the_configured_share_of_each_task(toy_tasks) -> None:
    method = Replay(ReplayConfig(fraction=0.25))
    fill(method, toy_tasks[:3])
    assert list(method.buffer) == [t.name for t in toy_tasks[:3]]
    for task in toy_tasks[:3]:
        ids = method.buffer[task.name]
        assert len(ids) == 8 == len(set(ids))  # a quarter of 32, no duplicate
        assert set(ids) <= {s.id for s in task.train}
    by_count = Replay(ReplayConfig(count=5))
    fill(by_count, toy_tasks[:2])
    assert [len(ids) for ids in by_count.buffer.values()] == [5, 5]


def test_buffer_is_seeded(toy_tasks) -> None:
    first, same, other = (Replay(ReplayConfig(seed=seed)) for seed in (1, 1, 2))
    for method in (first, same, other):
        fill(method, toy_tasks[:2])
    assert first.buffer == same.buffer
    assert first.buffer != other.buffer
    positions = [[s.id for s in t.train].index(i) for t in toy_tasks[:2] for i in first.buffer[t.name]]
    assert positions[:3] != positions[3:]  # the task index enters the seed


def test_training_samples_and_resume(toy_tasks) -> None:
    method = Replay(ReplayConfig(fraction=0.1))
    fill(method, toy_tasks[:2])
    samples = method.training_samples(toy_tasks[2], toy_tasks[:2])
    assert samples[:32] == toy_tasks[2].train
    assert [s.id for s in samples[32:]] == method.buffer[toy_tasks[0].name] + method.buffer[toy_tasks[1].name]

    restored = Replay(ReplayConfig(fraction=0.1))
    restored.load_extra_state(json.loads(json.dumps(method.extra_state())))  # through JSON, as checkpoints
    assert restored.training_samples(toy_tasks[2], toy_tasks[:2]) == samples
    assert restored.state_dict() == {}

    restored.buffer[toy_tasks[0].name].append("no-such-id")
    with pytest.raises(ResumeMismatchError, match="no-such-id"):
        restored.training_samples(toy_tasks[2], toy_tasks[:2])


class RecordingReplay(Replay):
    """Replay that records every training batch's token ids."""

    def __init__(self, config: ReplayConfig) -> None:
        super().__init__(config)
        self.rows: list[list[int]] = []

    def loss(self, batch, outputs, model):
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
            self.rows.append(ids[mask.bool()].tolist())
        return {}


def test_replayed_samples_enter_later_training_batches(tiny_model, toy_tasks, train_one) -> None:
    method = RecordingReplay(ReplayConfig(fraction=0.1))
    model = method.attach(tiny_model)
    model, _ = train_one(method, model, 0, steps=1)
    assert len(method.buffer[toy_tasks[0].name]) == 3
    method.rows.clear()
    model, result = train_one(method, model, 1, steps=5)  # 5 x 8 = 40 >= 35 samples: one full epoch
    assert result.samples == 35
    replayed = [s for s in toy_tasks[0].train if s.id in method.buffer[toy_tasks[0].name]]
    for sample in replayed:
        assert toy_tasks[0].encode(sample).input_ids in method.rows
