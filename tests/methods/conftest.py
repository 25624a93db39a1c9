"""Fixtures for method tests: the packaged tiny model and a small toy stream as `TaskData`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine, TrainResult
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.base import Method
from citkit.models.loading import load_model, load_processor
from citkit.models.registry import packaged_tiny_model


@pytest.fixture(autouse=True)
def _threads() -> None:
    # One thread: the tiny model is far faster single-threaded on a shared, loaded CPU.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_processor() -> Any:
    return load_processor(packaged_tiny_model())


@pytest.fixture(scope="session")
def _tiny_base() -> torch.nn.Module:
    model = load_model(packaged_tiny_model())
    model.requires_grad_(False)
    return model


@pytest.fixture
def tiny_model(_tiny_base: torch.nn.Module) -> torch.nn.Module:
    """A fresh, frozen copy of the packaged tiny LLaVA (no adapter yet)."""
    return copy.deepcopy(_tiny_base)


@pytest.fixture(scope="session")
def toy_tasks(tmp_path_factory: pytest.TempPathFactory, tiny_processor: Any) -> list[TaskData]:
    """The six toy tasks with 32 training and 8 test samples each."""
    folder: Path = tmp_path_factory.mktemp("methods-toy")
    stream_file = export(ToyWorldConfig("distinct", train_per_task=32, test_per_task=8), folder)
    stream = load_stream(StreamConfig(name=str(stream_file)), folder)
    cache = EncodingCache(SampleEncoder(tiny_processor))
    return [TaskData(task, index, cache) for index, task in enumerate(stream.tasks)]


TrainOne = Callable[..., tuple[torch.nn.Module, TrainResult]]


@pytest.fixture
def train_one(toy_tasks: list[TaskData]) -> TrainOne:
    """Run one task as the runner does: the engine's fit_task (training_samples, before_task, a few steps,
    after_task)."""

    def run(method: Method, model: torch.nn.Module, index: int, steps: int = 2,
            batch_size: int = 8) -> tuple[torch.nn.Module, TrainResult]:
        engine = Engine(TrainConfig(max_steps=steps, batch_size=batch_size, progress=False, log_every=1), cpu=True)
        return engine.fit_task(model, method, toy_tasks[index], toy_tasks[:index], seed=index)

    return run
