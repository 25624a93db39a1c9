"""Shared fixtures: the packaged tiny model and small toy streams on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _threads() -> None:
    # One thread: the tiny models gain little from two, and several torch processes on 2 cores (the
    # two-process tests, or a second job beside the suite) slow down many times over when each spins two.
    torch.set_num_threads(int(os.environ.get("CITKIT_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from citkit.models.registry import packaged_tiny_model

    path = packaged_tiny_model()
    if not (path / "config.json").is_file():
        raise RuntimeError(f"the packaged tiny model is missing at {path}; run `citkit model pretrain --out {path}`")
    return path


@pytest.fixture(scope="session")
def small_stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A six-task toy stream with 48 training and 12 test samples per task."""
    from citkit.data.toy.world import ToyWorldConfig, export

    toy = ToyWorldConfig("distinct", train_per_task=48, test_per_task=12, seed=3)
    return export(toy, tmp_path_factory.mktemp("toy"))


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every fit_task ends with accelerate's free_memory(), a full gc.collect(): with transformers
    # imported that walks ~500k objects (about half a second on the 2-core machine). Freezing what
    # exists after collection (modules, classes) leaves the collector only what the tests create.
    import gc

    gc.collect()
    gc.freeze()
