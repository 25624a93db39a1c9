"""Two processes (gloo on CPU) with the same global batch reach the same matrix as one process, write the
run directory once, and resume after an interruption to the same matrix; the tiny base builds on two."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("distributed_run.py")
PRETRAIN = Path(__file__).with_name("distributed_pretrain.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_script(processes: int, script: Path, *args: str) -> None:
    """`script args` as one process, or as `processes` processes under torch.distributed.run (gloo on CPU)."""
    command = [sys.executable, str(script), *args]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *command[1:]]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def launch(processes: int, stream: Path, runs: Path, name: str, batch_size: int, stop_after: int | None = None,
           settings: tuple[str, ...] = ()) -> None:
    launch_script(processes, SCRIPT, str(stream), str(runs), name, str(batch_size),
                  str(stop_after) if stop_after is not None else "-", *settings)


def outputs(run_dir: Path) -> tuple[list, list[str]]:
    matrix = json.loads((run_dir / "matrix.json").read_text())
    predictions = [(run_dir / "predictions" / f"row_{r}.jsonl").read_text() for r in range(3)]
    return matrix, predictions


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    from citkit.data.toy.world import ToyWorldConfig, export

    # 16 training samples: two processes x 4 x 2 steps cover each epoch without padding batches
    toy = ToyWorldConfig("distinct", train_per_task=16, test_per_task=6, seed=3)
    return export(toy, tmp_path_factory.mktemp("dist-toy"))


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, stream) -> None:
    launch(1, stream, tmp_path, "one", batch_size=8)
    launch(2, stream, tmp_path, "two", batch_size=4)
    one, two = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert one[0]["rows"] == two[0]["rows"] and any(v > 0 for row in one[0]["rows"][1:] for v in row)
    assert one[1] == two[1]  # every prediction, by id, identical
    env = json.loads((tmp_path / "two" / "environment.json").read_text())
    assert env["processes"] == 2
    lines = [json.loads(line) for line in (tmp_path / "two" / "predictions" / "row_1.jsonl").read_text().splitlines()]
    ids = [line["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 12  # both tasks' 6 test samples, each once, none lost
    assert not list((tmp_path / "two").rglob("*.tmp"))


def test_two_processes_share_the_like_length_batches_of_group_by_length(tmp_path, stream) -> None:
    """accelerate shards the length-grouped batch sampler: each process trains on its own batches of the
    same seeded order, and the run completes with every test sample predicted once."""
    launch(2, stream, tmp_path, "grouped", batch_size=4, settings=("train.group_by_length=true",))
    matrix, predictions = outputs(tmp_path / "grouped")
    assert any(v > 0 for row in matrix["rows"][1:] for v in row)
    config = json.loads((tmp_path / "grouped" / "config.json").read_text())
    assert config["train"]["group_by_length"] is True
    ids = [json.loads(line)["id"] for line in predictions[1].splitlines()]
    assert len(ids) == len(set(ids)) == 12


def test_a_base_build_on_two_processes_trains_on_the_same_global_batches(tmp_path) -> None:
    """`pretrain_tiny` under torch.distributed.run: each process takes half of every step's samples (vision
    warm-up and full fine-tune), so the weights equal the one-process build's up to the rounding of summed
    gradients; the gate is evaluated on shards and the main process alone saves."""
    import torch
    from safetensors.torch import load_file

    launch_script(1, PRETRAIN, str(tmp_path / "one"))
    launch_script(2, PRETRAIN, str(tmp_path / "two"))
    one, two = (json.loads((tmp_path / n / "quality.json").read_text()) for n in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2) and one["scores"] == two["scores"]
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    differences = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # other batches (e.g. the warm-up's pictures counted per process) move weights by lr-sized steps (~1e-3)
    assert float(differences.mean()) < 1e-6 and not torch.equal(differences, torch.zeros_like(differences))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny-")]  # no staging left behind


@pytest.mark.slow
def test_two_processes_interrupted_after_a_task_resume_to_the_same_matrix(tmp_path, stream) -> None:
    launch(2, stream, tmp_path, "whole", batch_size=4)
    launch(2, stream, tmp_path, "split", batch_size=4, stop_after=1)
    assert json.loads((tmp_path / "split" / "matrix.json").read_text())["rows"][2] == [None, None]
    launch(2, stream, tmp_path, "split", batch_size=4)
    assert outputs(tmp_path / "whole") == outputs(tmp_path / "split")


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed-zero2", "DEEPSPEED"),
                                        ("deepspeed-zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_load(name: str, kind: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    from citkit.configs import accelerate_config

    config = load_config_from_file(str(accelerate_config(name)))
    assert config.distributed_type.name == kind and config.mixed_precision == "bf16"
