"""In-process runner against Flower's simulation engine (Ray): same matrix, same adapters, and the time each takes.

    python bench/fed_simulation_check.py [RUNS_DIR]      (needs pip install 'citkit[simulation]')

Two toy tasks, 3 clients, 2 per round, 1 round per stage, LoRA-FT + FedAvg, one torch thread per process.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from citkit.config import from_dict
from citkit.data.streams import StreamConfig, load_stream
from citkit.federated import FedRunConfig
from citkit.federated.runner import run
from citkit.io import load_tensors


def config(runs: Path, name: str) -> FedRunConfig:
    toy = {"train_per_task": 40, "test_per_task": 8}
    tasks = load_stream(from_dict(StreamConfig, {"toy": toy}), runs / "_data").task_names[:2]
    return from_dict(FedRunConfig, {
        "run": {"method": "lora-ft", "runs_dir": str(runs), "name": name, "stream": {"toy": toy, "tasks": tasks},
                "train": {"batch_size": 8, "lr": 0.005, "progress": False}},
        "federated": {"num_clients": 3, "clients_per_round": 2, "rounds_per_stage": 1, "local_epochs": 3.0}})


def main() -> None:
    torch.set_num_threads(1)
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="fed-sim-"))
    start = time.perf_counter()
    local = run(config(runs, "in-process"))
    middle = time.perf_counter()
    simulated = run(config(runs, "simulation"), backend="simulation")
    end = time.perf_counter()
    a = load_tensors(local.run_dir / "checkpoints" / "task_2" / "adapter.safetensors")
    b = load_tensors(simulated.run_dir / "checkpoints" / "task_2" / "adapter.safetensors")
    print(f"in-process: {middle - start:.0f} s, matrix {local.matrix.rows}")
    print(f"simulation: {end - middle:.0f} s, matrix {simulated.matrix.rows}")
    print(f"same matrix: {local.matrix.rows == simulated.matrix.rows}; largest adapter difference "
          f"{max(float((a[k] - b[k]).abs().max()) for k in a):.1e}")


if __name__ == "__main__":
    main()
