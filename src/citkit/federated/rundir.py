"""The run directory of a federated run: a centralised run's files plus the federation's.

```
runs/<name>/
  config.json, environment.json, matrix.json/.csv, metrics.json, report.md, matrix.png   as `citkit run`
  predictions/row_<s>.jsonl     per-sample predictions after stage s (row 0: the base model)
  task_scores.json              per row, the score of every stream task (a unit averages its tasks)
  tasks.json                    per stage: client steps, seconds, samples, parameters, eval time
  rounds.json                   per round: clients sampled, replied, failed (with the reason), bytes down/up,
                                seconds; DISCO's client -> slot assignment
  federation.md                 the federation's part of report.md (settings, FCIT Last/Avg, bytes, rounds)
  checkpoints/task_<s>/         adapter.safetensors (the global model), method.safetensors/.json (the
                                server's method state, DISCO's tokens), clients.safetensors/.json (the
                                clients' own states, when the server holds them: in-process)
```
The checkpoint of stage s is written before row s of the matrix, so a run killed at any moment resumes
after its last finished stage and reaches the same matrix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from torch import Tensor

from citkit.federated.payload import from_record, to_record
from citkit.io import load_tensors, read_json, save_tensors, write_json
from citkit.rundir import RunDirectory

MethodState = tuple[dict[str, Tensor], dict[str, Any]]  # tensors (safetensors) and JSON


class FederatedRunDirectory(RunDirectory):
    """Reads and writes one federated run's files (main process only)."""

    def __init__(self, path: str | Path, resuming: bool = False) -> None:
        super().__init__(path)
        self.resuming = resuming

    def write_rounds(self, rounds: list[dict[str, Any]]) -> None:
        write_json(self.path / "rounds.json", rounds)

    def write_stages(self, stages: list[dict[str, Any]]) -> None:
        self.write_tasks_log(stages)

    def write_task_scores(self, rows: list[dict[str, float]]) -> None:
        write_json(self.path / "task_scores.json", rows)

    def read_logs(self, finished: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, float]]]:
        """Rounds, stage entries and task-score rows of the first `finished` stages (a resumed run drops
        whatever a killed stage had logged)."""
        rounds = read_json(self.path / "rounds.json") if (self.path / "rounds.json").exists() else []
        scores_path = self.path / "task_scores.json"
        scores = read_json(scores_path) if scores_path.exists() else []
        return ([r for r in rounds if r["stage"] < finished], self.read_tasks_log()[:finished],
                scores[: finished + 1])

    def save_stage(self, stage: int, state: dict[str, Tensor], method_state: MethodState,
                   clients: dict[str, Any]) -> None:
        folder = self.checkpoint_dir(stage)
        tensors, extra = method_state
        if clients:
            save_tensors(folder / "clients.safetensors", clients["tensors"])
            write_json(folder / "clients.json", clients["config"])
        self.save_checkpoint(stage, state, tensors, extra)  # method.json last: it marks the checkpoint complete

    def load_stage(self, stage: int) -> tuple[dict[str, Tensor], MethodState, dict[str, Any]]:
        state, tensors, extra = self.load_checkpoint(stage)
        folder = self.checkpoint_dir(stage)
        clients: dict[str, Any] = {}
        if (folder / "clients.json").exists():
            clients = {"tensors": load_tensors(folder / "clients.safetensors"),
                       "config": read_json(folder / "clients.json")}
        return state, (tensors, extra), clients


class ContextStore:
    """Saves and restores the clients' `context.state` of an in-process grid (their own method states)."""

    def __init__(self, contexts: dict[int, Context]) -> None:
        self.contexts = contexts

    def dump(self) -> dict[str, Any]:
        tensors: dict[str, Tensor] = {}
        config: dict[str, Any] = {}
        for node, context in self.contexts.items():
            for key, record in context.state.items():
                if isinstance(record, ArrayRecord):
                    tensors |= {f"{node}/{key}/{name}": t for name, t in from_record(record).items()}
                    config.setdefault(str(node), {})[key] = {"kind": "arrays", "names": sorted(record.keys())}
                elif isinstance(record, ConfigRecord):
                    config.setdefault(str(node), {})[key] = {"kind": "config", "values": json.loads(
                        json.dumps(dict(record.items())))}
        return {"tensors": tensors, "config": config}

    def load(self, saved: dict[str, Any]) -> None:
        for node, context in self.contexts.items():
            context.state = RecordDict()
            for key, entry in saved.get("config", {}).get(str(node), {}).items():
                if entry["kind"] == "arrays":
                    context.state[key] = to_record({n: saved["tensors"][f"{node}/{key}/{n}"] for n in entry["names"]})
                else:
                    context.state[key] = ConfigRecord(entry["values"])
