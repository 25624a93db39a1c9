"""Interrupted-and-resumed equals uninterrupted for EWC-TIR (the most stateful) and HiDe-LLaVA (its
fused layers are folded), and with --runslow replay, MAS and LwF: three-task runs of the tiny model
through the runner, about 4 s each."""

from __future__ import annotations

import json

import pytest

from citkit.data.toy.world import ToyWorldConfig, export
from citkit.run_config import build_run_config
from citkit.runner import run

SLOW = [pytest.param(m, marks=pytest.mark.slow) for m in ("replay", "mas", "lwf")]


@pytest.mark.parametrize("method", ["ewc-tir", "hide-llava", *SLOW])
def test_resumed_run_equals_uninterrupted(tmp_path, method: str) -> None:
    stream_file = export(ToyWorldConfig("distinct", train_per_task=24, test_per_task=4), tmp_path / "toy")
    overrides = [f"stream.name={stream_file}", "stream.tasks=[colour, shape, count]", "train.max_steps=3",
                 "train.batch_size=8", "train.progress=false", "method.importance_max_samples=8"]
    if method in ("replay", "lwf", "hide-llava"):
        overrides.pop()

    def config(name: str):
        return build_run_config({}, overrides, method=method, seed=1, name=name, runs_dir=str(tmp_path))

    whole = run(config("whole"))
    run(config("split"), stop_after=2)  # resumed with two tasks of state (HiDe: a folded expert)
    resumed = run(config("split"))
    assert resumed.matrix.rows == whole.matrix.rows
    for task in range(1, 4):  # checkpoints/task_1 .. task_3
        a = json.loads((whole.run_dir / "checkpoints" / f"task_{task}" / "method.json").read_text())
        b = json.loads((resumed.run_dir / "checkpoints" / f"task_{task}" / "method.json").read_text())
        assert a == b
    if method == "ewc-tir":
        saved = json.loads((whole.run_dir / "checkpoints" / "task_3" / "method.json").read_text())
        assert len(saved["tir"]["similarity"]["combined"]) == 3  # the 3 x 3 matrix, saved with the task
