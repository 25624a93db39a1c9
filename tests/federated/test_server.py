"""Round checkpoints: a run killed inside a stage resumes after its last finished round and reaches the
matrix and adapters of an uninterrupted run, without re-running the rounds it had finished."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from citkit.eval.matrix import AccuracyMatrix
from citkit.federated.runner import run
from citkit.io import load_tensors, read_json

from .helpers import small_config

pytestmark = pytest.mark.filterwarnings("ignore")

# EWC keeps per-client importances (the clients' states); FedAvgM keeps a server momentum across rounds;
# DISCO's coordinator keeps the stage's client groups (made in its first round) and the global tokens.
SETTINGS = {"rounds_per_stage": 3, "local_epochs": 1.0, "strategy": "fedavgm",
            "strategy_options": {"server_momentum": 0.9}}
CASES = [("ewc", SETTINGS, (1, 2), "round_2_2"),
         ("disco", {"rounds_per_stage": 2}, (0, 1), "round_1_1")]


class Killed(BaseException):
    """Stands for the process being killed (a BaseException: a client's Exception becomes an error reply)."""


def counting_client(calls: list[tuple[int, int]], kill_at: tuple[int, int] | None = None):  # type: ignore[no-untyped-def]
    def wrap(app):  # type: ignore[no-untyped-def]
        def call(message, context):  # type: ignore[no-untyped-def]
            at = (int(message.content["config"]["stage"]), int(message.content["config"]["round"]))
            if at == kill_at:
                raise Killed(f"killed in stage {at[0]} round {at[1]}")
            calls.append(at)
            return app(message, context)
        return call
    return wrap


@pytest.mark.parametrize("method, federated, kill_at, kept", CASES, ids=[c[0] for c in CASES])
def test_a_run_killed_inside_a_stage_resumes_after_its_last_round(
        tmp_path: Path, method: str, federated: dict, kill_at: tuple[int, int], kept: str) -> None:
    whole = run(small_config(tmp_path, method=method, name="whole", federated=federated))
    config = small_config(tmp_path, method=method, name="killed", federated=federated)
    with pytest.raises(Killed):  # killed while round `kill_at` trains: the rounds before it are checkpointed
        run(config, wrap_client=counting_client([], kill_at=kill_at))
    run_dir = tmp_path / "killed"
    assert [p.name for p in (run_dir / "checkpoints").glob("round_*")] == [kept]
    after: list[tuple[int, int]] = []
    resumed = run(config, wrap_client=counting_client(after))
    assert min(after) == kill_at  # the rounds that had finished did not run again
    assert whole.matrix.rows[2] != whole.matrix.rows[0]  # training changed the scores
    assert AccuracyMatrix.load(run_dir).rows == whole.matrix.rows
    for name in ("adapter.safetensors", "method.safetensors", "clients.safetensors"):
        mine, theirs = (load_tensors(d / "checkpoints" / "task_2" / name) for d in (run_dir, whole.run_dir))
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    rounds = read_json(run_dir / "rounds.json")
    per_stage = federated["rounds_per_stage"]
    assert [(r["stage"], r["round"]) for r in rounds] == [(s, r) for s in range(2) for r in range(per_stage)]
    assert [r["clients"] for r in rounds] == [r["clients"] for r in read_json(whole.run_dir / "rounds.json")]
    assert read_json(run_dir / "tasks.json")[1]["steps"] == read_json(whole.run_dir / "tasks.json")[1]["steps"]
    assert not list((run_dir / "checkpoints").glob("round_*"))  # cleared once the stage finished
    assert resumed.metrics["mfn"] == whole.metrics["mfn"]


def test_round_checkpoints_can_be_turned_off(tmp_path: Path) -> None:
    config = small_config(tmp_path, name="off", federated={**SETTINGS, "checkpoint_rounds": False})
    with pytest.raises(Killed):
        run(config, wrap_client=counting_client([], kill_at=(0, 1)))
    assert not list((tmp_path / "off" / "checkpoints").glob("round_*"))
