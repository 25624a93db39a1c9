"""The run directory: the only state of a continual run.

```
runs/<name>/
  config.json              resolved configuration (resume refuses a different one)
  environment.json         versions, device, seed
  matrix.json, matrix.csv  accuracy matrix, rows 0..T; a complete row marks a finished task
  metrics.json             MFT, MFN, MAA, BWT, Forgetting, FWT
  tasks.json               per task: steps, seconds, trainable parameters, loss log, eval time
  predictions/row_<t>.jsonl  per-sample predictions after task t (row 0 = base model)
  checkpoints/task_<t>/    adapter.safetensors, method.safetensors, method.json
  report.md, matrix.png
```
Every file is written atomically; the checkpoint of task t is written before row t of the matrix,
so a run killed at any moment resumes from its last finished task.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from citkit.errors import CitkitError, ResumeMismatchError
from citkit.io import load_tensors, read_json, save_tensors, write_json, write_jsonl


def environment(seed: int, device: str, processes: int = 1) -> dict[str, Any]:
    import accelerate
    import peft
    import transformers

    import citkit

    return {"citkit": citkit.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__,
            "device": device, "processes": processes, "threads": torch.get_num_threads(), "seed": seed,
            "platform": platform.platform()}


_ABSENT = object()
# Settings removed from the configs that never changed what a run computes; a run directory saved with one
# still resumes. stream.toy.variant: a built-in toy stream's name has always picked its variant.
RETIRED_SETTINGS = ("stream.toy.variant",)


def _without_retired(identity: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(identity))
    for dotted in RETIRED_SETTINGS:
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def saved_settings(run_dir: str | Path) -> dict[str, Any]:
    """The settings a run directory was made with (its config.json, retired settings left out), with
    `runs_dir` and `name` pointing at the directory where it is now: what `build_run_config` takes to resume
    or analyse it."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise CitkitError(f"{run_dir} is not a run directory (no config.json)")
    saved = _without_retired(read_json(run_dir / "config.json"))
    return saved | {"runs_dir": str(run_dir.parent), "name": run_dir.name}


def _differences(old: Any, new: Any, defaults: Any = _ABSENT, prefix: str = "") -> list[str]:
    """Settings that differ between a saved identity and a new one, as 'path: old -> new'.

    A setting the saved identity lacks (made before the setting existed) counts as unchanged when the
    new value is the setting's default, which reproduces what the older version did."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            default = defaults.get(key, _ABSENT) if isinstance(defaults, dict) else _ABSENT
            if key not in old and default is not _ABSENT and new.get(key) == default:
                continue
            out += _differences(old.get(key), new.get(key), default, f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


class RunDirectory:
    """Reads and writes one run's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_or_write_config(self, identity: dict[str, Any], defaults: dict[str, Any] | None = None) -> bool:
        """Write the config of a new run; for an existing one, refuse a different config. True if resuming.

        `defaults` (the identity of a default config) lets a run saved before a setting existed resume
        when that setting keeps its default."""
        config_file = self.path / "config.json"
        if config_file.exists():
            saved = _without_retired(read_json(config_file))
            diff = _differences(saved, identity, defaults if defaults is not None else _ABSENT)
            if diff:
                raise ResumeMismatchError(f"run directory {self.path} was made with other settings "
                                          f"({'; '.join(diff[:4])}); "
                                          "choose another --name, or delete the folder to start over")
            return True
        write_json(config_file, identity)
        return False

    def write_environment(self, env: dict[str, Any]) -> None:
        write_json(self.path / "environment.json", env)

    def checkpoint_dir(self, task_index: int) -> Path:
        return self.path / "checkpoints" / f"task_{task_index + 1}"

    def save_checkpoint(self, task_index: int, adapter: dict[str, torch.Tensor],
                        method_tensors: dict[str, torch.Tensor], method_extra: dict[str, Any]) -> None:
        folder = self.checkpoint_dir(task_index)
        save_tensors(folder / "adapter.safetensors", adapter)
        save_tensors(folder / "method.safetensors", method_tensors)
        write_json(folder / "method.json", method_extra)

    def load_checkpoint(self, task_index: int
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
        folder = self.checkpoint_dir(task_index)
        if not (folder / "method.json").exists():
            raise ResumeMismatchError(f"{folder} is incomplete; the run cannot resume from task {task_index + 1}. "
                                      "Delete the run folder to start over")
        return (load_tensors(folder / "adapter.safetensors"), load_tensors(folder / "method.safetensors"),
                read_json(folder / "method.json"))

    def save_predictions(self, row: int, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / "predictions" / f"row_{row}.jsonl", rows)

    def read_tasks_log(self) -> list[dict[str, Any]]:
        path = self.path / "tasks.json"
        return read_json(path) if path.exists() else []

    def write_tasks_log(self, log: list[dict[str, Any]]) -> None:
        write_json(self.path / "tasks.json", log)
