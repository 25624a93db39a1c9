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
  checkpoints/round_<s>_<r>/    after round r of the unfinished stage s: global.safetensors, strategy.*
                                (the server optimiser's state), method.safetensors, clients.*, rng.safetensors
                                and round.json, written last (it marks the folder complete); the one
                                before it is deleted then, and all of them once the stage is finished
```
The checkpoint of stage s is written before row s of the matrix, so a run killed at any moment resumes
after its last finished stage, or after the last finished round of the stage it was in, and reaches the
same matrix.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from torch import Tensor

from citkit.federated.payload import from_record, to_record
from citkit.io import load_tensors, read_json, save_tensors, write_json
from citkit.rundir import RunDirectory

MethodState = tuple[dict[str, Tensor], dict[str, Any]]  # tensors (safetensors) and JSON


@dataclass
class RoundCheckpoint:
    """The server's state after a finished round of an unfinished stage."""

    stage: int
    round_index: int
    state: dict[str, Tensor]        # the global model's tensors
    strategy: MethodState           # `strategies.strategy_state`
    method: MethodState             # the method coordinator's state (DISCO's tokens and table)
    clients: dict[str, Any]         # the clients' own states (in-process), as `ContextStore.dump`
    info: dict[str, Any]            # steps and seconds of the stage so far
    rng: MethodState = ({}, {})     # the process's random number generators (`rng_state`)


def rng_state() -> MethodState:
    """torch's (CPU and CUDA), numpy's and Python's global generators. Sampling and training draw from
    generators seeded by stage, round and client, so nothing should depend on these; they are saved with
    a round so that a resumed run continues from the very same state even if something did."""
    python_rng, numpy_rng = random.getstate(), np.random.get_state()
    tensors = {"torch": torch.get_rng_state()} | {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return tensors, {"python": [python_rng[0], list(python_rng[1]), python_rng[2]],
                     "numpy": [numpy_rng[0], numpy_rng[1].tolist(), *numpy_rng[2:]]}


def set_rng_state(state: MethodState) -> None:
    tensors, extra = state
    if not tensors:
        return
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    python_rng, numpy_rng = extra["python"], extra["numpy"]
    random.setstate((python_rng[0], tuple(python_rng[1]), python_rng[2]))
    np.random.set_state((numpy_rng[0], np.array(numpy_rng[1], dtype=np.uint32), *numpy_rng[2:]))


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

    def read_logs(self, finished: int, rounds_done: int = 0
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, float]]]:
        """Rounds, stage entries and task-score rows of the first `finished` stages, plus the first
        `rounds_done` rounds of the next one (a resumed run drops whatever came after its checkpoint)."""
        rounds = read_json(self.path / "rounds.json") if (self.path / "rounds.json").exists() else []
        scores_path = self.path / "task_scores.json"
        scores = read_json(scores_path) if scores_path.exists() else []
        kept = [r for r in rounds if r["stage"] < finished or (r["stage"] == finished and r["round"] < rounds_done)]
        return kept, self.read_tasks_log()[:finished], scores[: finished + 1]

    def save_stage(self, stage: int, state: dict[str, Tensor], method_state: MethodState,
                   clients: dict[str, Any]) -> None:
        folder = self.checkpoint_dir(stage)
        tensors, extra = method_state
        if clients:
            save_tensors(folder / "clients.safetensors", clients["tensors"])
            write_json(folder / "clients.json", clients["config"])
        self.save_checkpoint(stage, state, tensors, extra)  # method.json last: it marks the checkpoint complete

    def round_dirs(self) -> list[Path]:
        return sorted((self.path / "checkpoints").glob("round_*"))

    def save_round(self, checkpoint: RoundCheckpoint) -> None:
        """Write the round's folder (round.json last), then delete every other round folder."""
        folder = self.path / "checkpoints" / f"round_{checkpoint.stage + 1}_{checkpoint.round_index + 1}"
        save_tensors(folder / "global.safetensors", checkpoint.state)
        save_tensors(folder / "strategy.safetensors", checkpoint.strategy[0])
        save_tensors(folder / "method.safetensors", checkpoint.method[0])
        if checkpoint.clients:
            save_tensors(folder / "clients.safetensors", checkpoint.clients["tensors"])
        save_tensors(folder / "rng.safetensors", checkpoint.rng[0])
        write_json(folder / "round.json", {
            "stage": checkpoint.stage, "round": checkpoint.round_index, "info": checkpoint.info,
            "strategy": checkpoint.strategy[1], "method": checkpoint.method[1],
            "clients": checkpoint.clients.get("config"), "rng": checkpoint.rng[1]})
        self.clear_rounds(keep=folder)

    def load_round(self, stage: int) -> RoundCheckpoint | None:
        """The last complete round checkpoint of `stage` (None if there is none)."""
        folders = [f for f in self.round_dirs() if (f / "round.json").exists()]
        saved = [(read_json(f / "round.json"), f) for f in folders]
        saved = [(meta, f) for meta, f in saved if meta["stage"] == stage]
        if not saved:
            return None
        meta, folder = max(saved, key=lambda item: item[0]["round"])
        clients = ({"tensors": load_tensors(folder / "clients.safetensors"), "config": meta["clients"]}
                   if meta["clients"] is not None else {})
        return RoundCheckpoint(stage, meta["round"], load_tensors(folder / "global.safetensors"),
                               (load_tensors(folder / "strategy.safetensors"), meta["strategy"]),
                               (load_tensors(folder / "method.safetensors"), meta["method"]), clients, meta["info"],
                               (load_tensors(folder / "rng.safetensors"), meta["rng"]))

    def clear_rounds(self, keep: Path | None = None) -> None:
        for folder in self.round_dirs():
            if folder != keep:
                shutil.rmtree(folder, ignore_errors=True)

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
