"""The same ServerApp and ClientApp under Flower's simulation engine (Ray) give the in-process matrix."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from citkit.federated.apps import config_from_json, config_to_json
from citkit.federated.runner import run
from citkit.io import load_tensors, read_json

from .helpers import small_config


def test_settings_travel_as_json(tmp_path: Path) -> None:
    config = small_config(tmp_path, method="disco", federated={"beta": 0.5, "strategy": "fedavg"})
    again = config_from_json(config_to_json(config))
    assert again.identity() == config.identity() and Path(again.run.runs_dir) == tmp_path.resolve()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs pip install 'citkit[simulation]'")
def test_simulation_engine_reaches_the_in_process_matrix(tmp_path: Path) -> None:
    local = run(small_config(tmp_path, name="in-process"))
    simulated = run(small_config(tmp_path, name="simulation"), backend="simulation")
    assert simulated.matrix.rows == local.matrix.rows
    assert [r["replied"] for r in read_json(simulated.run_dir / "rounds.json")] == \
        [r["replied"] for r in read_json(local.run_dir / "rounds.json")]
    a = load_tensors(local.run_dir / "checkpoints" / "task_2" / "adapter.safetensors")
    b = load_tensors(simulated.run_dir / "checkpoints" / "task_2" / "adapter.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
