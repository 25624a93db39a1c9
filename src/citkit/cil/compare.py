"""Several CIL methods (and variants) on one stream over several seeds: one table, one per-stage plot.

Each (method, seed) runs in its own run directory, so finished runs are reused and interrupted ones resume.
Entries are `METHOD` or `METHOD:OPTION=VALUE[:...]` as in `citkit compare` (e.g. `desire:refine=false`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from citkit.cil.report import plot_stages
from citkit.cil.runner import CILRunConfig, CILRunResult, run_cil
from citkit.compare import parse_method_entry
from citkit.errors import ConfigError
from citkit.io import read_json, write_json, write_text


@dataclass
class CompareRow:
    """One method's results over seeds."""

    label: str
    results: list[CILRunResult]

    def _values(self, key: str) -> list[float]:
        return [v for r in self.results if (v := r.metrics.as_dict()[key]) is not None]

    def _tasks(self) -> list[list[dict[str, Any]]]:
        return [read_json(r.run_dir / "tasks.json") for r in self.results]

    def cells(self) -> dict[str, Any]:
        tasks = self._tasks()
        stored = [t[-1]["stored_parameters"] for t in tasks]
        adapter = [t[-1]["stored_adapter_parameters"] for t in tasks]
        seconds = [np.mean([e["train_seconds"] for e in t]) for t in tasks]
        cells: dict[str, Any] = {"method": self.label, "seeds": len(self.results)}
        for key, name in (("avg", "Avg"), ("last", "Last"), ("task_last", "Last (task-avg)"),
                          ("forgetting", "Forgetting"), ("last_old_to_new", "old->new %")):
            values = self._values(key)
            cells[name] = (float(np.mean(values)), float(np.std(values))) if values else None
        cells["stored params"] = int(np.mean(stored))
        cells["of which LoRA"] = int(np.mean(adapter))
        cells["train s/task"] = float(np.mean(seconds))
        return cells


def _show(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, tuple):
        return f"{value[0]:.1f} ± {value[1]:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return str(value)


def compare_cil(config: CILRunConfig, methods: list[str], seeds: list[int]) -> Path:
    """Run (or reuse) every method x seed with `config`'s other settings; write compare.{md,csv,json,png}."""
    entries = [parse_method_entry(m) for m in methods]
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"cil compare: an entry is listed twice in {labels}")
    if not seeds:
        raise ConfigError("cil compare: give at least one seed")
    plans = []
    for entry in entries:  # every entry is checked before anything runs
        label = re.sub(r"[^A-Za-z0-9_]+", "-", entry.label).strip("-")
        runs = []
        for seed in seeds:
            plain = replace(config, method=entry.method, method_options=entry.options, seed=seed, name="")
            runs.append(replace(plain, name=plain.default_name(label)))
        plans.append((entry.label, runs))
    rows = [CompareRow(label, [run_cil(c) for c in runs]) for label, runs in plans]
    folder = Path(config.runs_dir) / f"cil-compare-{config.data.dataset}-{config.data.tasks}t"
    write_tables(rows, folder, seeds)
    curves = {r.label: np.mean([[s.pooled for s in res.stages] for res in r.results], 0).tolist() for r in rows}
    spread = {r.label: np.std([[s.pooled for s in res.stages] for res in r.results], 0).tolist() for r in rows}
    plot_stages(curves, folder / "compare.png", title=f"{config.data.dataset}, {config.data.tasks} tasks, "
                f"mean over seeds {','.join(map(str, seeds))}", errors=spread)
    write_json(folder / "curves.json", {"seeds": seeds, "mean": curves, "std": spread})
    return folder


def write_tables(rows: list[CompareRow], folder: Path, seeds: list[int]) -> None:
    table = [r.cells() for r in rows]
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(_show(cells[k]) for k in head) + " |" for cells in table]
    write_text(folder / "compare.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    paired = {k for cells in table for k, v in cells.items() if isinstance(v, tuple)}
    writer = csv.writer(buffer)
    writer.writerow([h for k in head for h in ((f"{k} mean", f"{k} std") if k in paired else (k,))])
    for cells in table:
        writer.writerow([x for k in head for x in ((cells[k] or ("", "")) if k in paired else (cells[k],))])
    write_text(folder / "compare.csv", buffer.getvalue())
    write_json(folder / "compare.json", {"seeds": seeds, "rows": table})
