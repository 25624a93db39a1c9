"""Small federated runs on the toy world for the tests (two tasks, three clients, seconds each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from citkit.config import from_dict
from citkit.data.streams import StreamConfig, load_stream
from citkit.federated import FedRunConfig

# The `toy` stream, named so the tests keep the world their thresholds were set on when the default changes.
STREAM = "toy"
TOY = {"train_per_task": 40, "test_per_task": 8}


def toy_task_names(runs_dir: Path) -> list[str]:
    """The toy stream's task names, whatever the toy world holds (read from its exported stream file)."""
    return load_stream(from_dict(StreamConfig, {"name": STREAM, "toy": TOY}), runs_dir / "_data").task_names


def small_config(runs_dir: Path, method: str = "lora-ft", tasks: int = 2, name: str = "",
                 federated: dict[str, Any] | None = None, method_options: dict[str, Any] | None = None,
                 **train: Any) -> FedRunConfig:
    torch.set_num_threads(1)
    names = toy_task_names(runs_dir)[:tasks]
    data = {"run": {"method": method, "runs_dir": str(runs_dir), "name": name, "method_options": method_options or {},
                    "stream": {"name": STREAM, "toy": TOY, "tasks": names},
                    "train": {"batch_size": 8, "lr": 0.01, "progress": False, **train}},
            "federated": {"num_clients": 3, "clients_per_round": 2, "rounds_per_stage": 1, "local_epochs": 3.0,
                          **(federated or {})}}
    return from_dict(FedRunConfig, data)
