"""The README's federated table on the built-in toy stream: FCIT settings x methods, one process, one thread.

    python bench/fed_toy_table.py [--runs-dir runs/fed-toy] [--only NAME,...] [--seed S]

Runs (or reuses: a finished run directory is read back) every row below with `citkit.federated.run`, then
prints one markdown table: Last (MFN) and Avg (MAA) over the units, FCIT's Last/Avg over the units met
so far (they differ from MFN/MAA only in the heterogeneous setting), BWT, bytes sent and received, and
the clients' training seconds (summed over the stages) and the run's wall time (config.json to the last
stage's tasks.json in its run directory). The centralised Joint
upper bound is a plain `citkit.run`. `--seed S` (S > 0) runs the rows with run seed S (the data split,
client sampling, initialisation and order), named `<row>-seedS`; seed 0 keeps the plain row names.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from citkit.config import from_dict
from citkit.data.streams import DEFAULT_STREAM
from citkit.federated import FedRunConfig
from citkit.federated import run as fed_run
from citkit.io import read_json
from citkit.models.lora import DEFAULT_TARGETS
from citkit.run_config import build_run_config
from citkit.runner import run as central_run

ALL_LINEAR = list(DEFAULT_TARGETS)  # every linear layer of the language model, as LoRA-FT adapts
# name -> (method, federated settings); defaults: 10 clients, 3 per round, 10 rounds per stage, 1 local epoch
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "task-homo-b1-lora-ft": ("lora-ft", {}),
    "task-homo-b1-ewc": ("ewc", {}),
    "task-homo-b1-o-lora": ("o-lora", {}),
    "task-homo-b1-moelora": ("moelora", {}),
    "task-homo-b1-disco": ("disco", {}),
    "task-hetero-b1-lora-ft": ("lora-ft", {"setting": "heterogeneous"}),
    "task-hetero-b1-o-lora": ("o-lora", {"setting": "heterogeneous"}),
    "task-hetero-b1-disco": ("disco", {"setting": "heterogeneous"}),
    "capability-homo-b1-lora-ft": ("lora-ft", {"scenario": "capability"}),
    "capability-homo-b1-disco": ("disco", {"scenario": "capability", "method": {"num_subspaces": 4}}),
    "task-homo-b0.5-lora-ft": ("lora-ft", {"beta": 0.5}),
    "task-homo-b0.5-disco": ("disco", {"beta": 0.5}),
    "task-homo-b5-lora-ft": ("lora-ft", {"beta": 5.0}),
    "task-homo-b5-disco": ("disco", {"beta": 5.0}),
    # EWC at the weight tuned centrally on toy-mixed (bench/tune_regularisers.sh), not its default 1e8
    "task-homo-b1-ewc-1e4": ("ewc", {"method": {"penalty_weight": 1e4}}),
    # DISCO with subspaces in every linear layer of the language model (attention too), not the FFN only
    "task-homo-b1-disco-all-linear": ("disco", {"method": {"target_modules": ALL_LINEAR}}),
    "task-hetero-b1-disco-all-linear": ("disco", {"setting": "heterogeneous",
                                                  "method": {"target_modules": ALL_LINEAR}}),
    "capability-homo-b1-disco-all-linear": ("disco", {"scenario": "capability",
                                                      "method": {"num_subspaces": 4, "target_modules": ALL_LINEAR}}),
    "task-homo-b0.5-disco-all-linear": ("disco", {"beta": 0.5, "method": {"target_modules": ALL_LINEAR}}),
    "task-homo-b5-disco-all-linear": ("disco", {"beta": 5.0, "method": {"target_modules": ALL_LINEAR}}),
    # DISCO where a client holding under 10 samples never opens a slot of its own (not the authors' code)
    "capability-homo-b1-disco-min10": ("disco", {"scenario": "capability", "method": {
        "num_subspaces": 4, "min_slot_samples": 10}}),
    "capability-homo-b1-disco-all-linear-min10": ("disco", {"scenario": "capability", "method": {
        "num_subspaces": 4, "target_modules": ALL_LINEAR, "min_slot_samples": 10}}),
    "task-homo-b0.5-disco-min10": ("disco", {"beta": 0.5, "method": {"min_slot_samples": 10}}),
    "task-homo-b0.5-disco-all-linear-min10": ("disco", {"beta": 0.5, "method": {
        "target_modules": ALL_LINEAR, "min_slot_samples": 10}}),
}


def federated_row(runs: Path, name: str, method: str, settings: dict[str, Any], stream: str,
                  model: str, train: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    settings = dict(settings)
    options = settings.pop("method", {})
    name = name if seed == 0 else f"{name}-seed{seed}"
    config = from_dict(FedRunConfig, {"run": {"method": method, "method_options": options, "runs_dir": str(runs),
                                              "name": name, "seed": seed, "train": {"progress": False, **train},
                                              "stream": {"name": stream}, "model": {"path": model}},
                                      "federated": settings})
    result = fed_run(config)
    return {"name": name, **result.metrics, "wall": wall_seconds(result.run_dir),
            "stages": read_json(result.run_dir / "tasks.json")}


def joint_row(runs: Path, stream: str, model: str, train: dict[str, Any]) -> dict[str, Any]:
    config = build_run_config({"method": "joint", "runs_dir": str(runs), "name": "central-joint",
                               "train": {"progress": False, **train}, "stream": {"name": stream},
                               "model": {"path": model}})
    result = central_run(config)
    return {"name": "central-joint (upper bound)", **result.metrics.as_dict(), "fcit_last": result.metrics.mfn,
            "fcit_avg": result.metrics.maa, "bytes_down": 0, "bytes_up": 0, "wall": wall_seconds(result.run_dir),
            "stages": read_json(result.run_dir / "tasks.json")}


def wall_seconds(run_dir: Path) -> float:
    """From the run's first file (config.json) to its last stage's log (tasks.json), which a reused run does
    not rewrite; a run that was interrupted and resumed counts the pause too."""
    return (run_dir / "tasks.json").stat().st_mtime - (run_dir / "config.json").stat().st_mtime


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs/fed-toy")
    parser.add_argument("--only", default="", help="comma-separated row names (default: all, and Joint)")
    parser.add_argument("--stream", default=DEFAULT_STREAM,
                        help=f"{DEFAULT_STREAM} (default), toy, or toy-format (the first world)")
    parser.add_argument("--model", default="tiny", help="tiny (default) or tiny-v1, the first world's model")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: citkit run's); the tables before 2026-12-07: 0.002")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per stage (default: citkit fed run's, 10); the older tables: 3")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0); S > 0 names runs <row>-seedS")
    args = parser.parse_args()
    train = {} if args.lr is None else {"lr": args.lr}
    torch.set_num_threads(1)
    runs = Path(args.runs_dir)
    only = [n for n in args.only.split(",") if n]
    rounds = {} if args.rounds is None else {"rounds_per_stage": args.rounds}
    rows = [federated_row(runs, name, ROWS[name][0], {**rounds, **ROWS[name][1]}, args.stream, args.model, train,
                          args.seed) for name in ROWS if not only or name in only]
    if not only or "joint" in only:
        rows.append(joint_row(runs, args.stream, args.model, train))
    print("| run | Last (MFN) | Avg (MAA) | FCIT Last | FCIT Avg | BWT | MB sent / received | train s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        seconds = sum(s["train_seconds"] for s in r["stages"])
        print(f"| {r['name']} | {fmt(r['mfn'])} | {fmt(r['maa'])} | {fmt(r['fcit_last'])} | {fmt(r['fcit_avg'])} | "
              f"{fmt(r['bwt'])} | {r['bytes_down'] / 1e6:.1f} / {r['bytes_up'] / 1e6:.1f} | "
              f"{seconds:.0f} | {r['wall']:.0f} |")


if __name__ == "__main__":
    main()
