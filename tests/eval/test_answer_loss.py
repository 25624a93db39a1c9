"""The answer loss: the cross-entropy of each reference answer token, averaged over every answer token of a set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from citkit.data.encoding import SampleEncoder
from citkit.data.samples import Task
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.eval.answer_loss import answer_loss, answered
from citkit.models.loading import load_model, load_processor


@pytest.fixture(scope="module")
def task(tiny_model_path: Path, small_stream_file: Path) -> TaskData:
    stream = load_stream(StreamConfig(name=str(small_stream_file), tasks=("colour",), test_limit=7),
                         small_stream_file.parent)
    return TaskData(stream.tasks[0], 0, EncodingCache(SampleEncoder(load_processor(tiny_model_path))))


@torch.no_grad()
def by_hand(model: torch.nn.Module, task: TaskData) -> float:
    """Sample by sample: -log p(answer token | everything before it), summed over all tokens, / their count."""
    total, count = 0.0, 0
    for sample in task.test:
        encoded = task.encode(answered(sample))
        batch = task.collate([encoded])
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        labels = batch["labels"][0]
        for position in range(1, len(labels)):
            if labels[position] != -100:
                total -= float(torch.log_softmax(logits[position - 1], -1)[labels[position]])
                count += 1
    return total / count


def test_answer_loss_is_the_mean_over_answer_tokens_whatever_the_batch(tiny_model_path: Path, task: TaskData) -> None:
    model = load_model(tiny_model_path).eval()
    expected = by_hand(model, task)
    assert 0 < expected < 20
    for batch_size in (1, 3, 64):  # 7 samples: uneven batches whose answer counts differ
        assert answer_loss(model, task, batch_size) == pytest.approx(expected, rel=1e-5)


def test_a_training_sample_with_a_test_samples_id_does_not_stand_in(tiny_model_path: Path, task: TaskData) -> None:
    model = load_model(tiny_model_path).eval()
    first = task.test[0]
    impostor = replace(answered(first), id=first.id, turns=(*first.turns, replace(answered(first).turns[-1],
                                                                                   text="nothing like it")))
    own = TaskData(Task("colour", [impostor], [first], task.task.scorer, 4), 0, task.cache)
    task.encode(impostor)  # now cached under the training form's key of the test sample's id
    alone = TaskData(Task("colour", [], [first], task.task.scorer, 4), 0,
                     EncodingCache(SampleEncoder(task.cache.encoder.processor)))
    assert answer_loss(model, own, 4) == pytest.approx(answer_loss(model, alone, 4), rel=1e-6)


def test_a_sample_without_an_answer_is_refused(task: TaskData) -> None:
    with pytest.raises(ValueError, match="no reference answer"):
        answered(replace(task.test[0], answer=None))
