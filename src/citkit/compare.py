"""Run several methods on the same stream and seed and put them side by side.

Each method runs in its own run directory (`<stream>-<method>-seed<seed>`), so a method that already
finished in an earlier compare is reused, not retrained, and an interrupted one resumes.

An entry may also be a variant, `METHOD:OPTION=VALUE[:OPTION=VALUE...]`, e.g.
`hide-llava:layout=expand-all` or `ewc:tir.enabled=true`: the method with those options (values read as
YAML, as with --set), labelled and stored under its own run directory
(`<stream>-hide-llava-layout-expand-all-seed<seed>`).
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from citkit.config import parse_override, set_path  # noqa: E402
from citkit.data.streams import stream_title  # noqa: E402
from citkit.errors import ConfigError  # noqa: E402
from citkit.eval.metrics import METRIC_LABELS  # noqa: E402
from citkit.io import atomic_write, read_json, write_text  # noqa: E402
from citkit.report.tables import fmt  # noqa: E402
from citkit.run_config import RunConfig, safe_name  # noqa: E402
from citkit.runner import RunResult, run  # noqa: E402


@dataclass
class MethodRow:
    """One method's line of the comparison."""

    method: str
    result: RunResult
    trainable_parameters: int
    stored_parameters: int
    train_seconds_per_task: float | None
    inference_ms_per_sample: float | None
    extra: dict[str, Any] = field(default_factory=dict)  # columns after the metrics (a federated run's)

    def cells(self) -> dict[str, Any]:
        metrics = self.result.metrics.as_dict()
        return {"method": self.method, **{METRIC_LABELS[k]: v for k, v in metrics.items()}, **self.extra,
                "trainable params": self.trainable_parameters, "stored params": self.stored_parameters,
                "train s/task": self.train_seconds_per_task, "inference ms/sample": self.inference_ms_per_sample}


def method_row(method: str, result: RunResult, extra: dict[str, Any] | None = None) -> MethodRow:
    """A run directory's line: metrics from `result`, sizes and timings from its tasks.json (one entry per
    task, or per stage of a federated run)."""
    tasks_path = result.run_dir / "tasks.json"
    tasks = read_json(tasks_path) if tasks_path.exists() else []
    if not tasks:  # zero-shot: nothing trained, nothing stored
        return MethodRow(method, result, 0, 0, None, None, extra or {})
    return MethodRow(method, result, max(t["trainable_parameters"] for t in tasks), tasks[-1]["stored_parameters"],
                     sum(t["train_seconds"] for t in tasks) / len(tasks),
                     1000 * sum(t["eval_seconds_per_sample"] for t in tasks) / len(tasks), extra or {})


@dataclass(frozen=True)
class MethodEntry:
    """One line of a comparison: a method, the options it runs with, and its label."""

    label: str
    method: str
    options: dict[str, Any]

    def run_config(self, config: RunConfig) -> RunConfig:
        """`config` with this method and options; variants get a run directory named after the label."""
        plain = replace(config, method=self.method, method_options=self.options, name="")
        if not self.options:
            return plain
        return replace(plain, name=plain.default_name(re.sub(r"[^A-Za-z0-9_]+", "-", self.label).strip("-")))


def parse_method_entry(text: str) -> MethodEntry:
    """'lora-ft' or 'hide-llava:layout=expand-all:temperature=0.05' -> MethodEntry."""
    method, *settings = [part.strip() for part in text.strip().split(":")]
    if not method:
        raise ConfigError(f"compare entry {text!r} has no method name; use METHOD or METHOD:OPTION=VALUE")
    options: dict[str, Any] = {}
    for setting in settings:
        if "=" not in setting:
            raise ConfigError(f"compare entry {text!r}: {setting!r} must look like OPTION=VALUE")
        path, value = parse_override(setting)
        set_path(options, path, value)
    label = method + "".join(f":{s}" for s in settings)
    return MethodEntry(label, method, options)


def compare(config: RunConfig, methods: list[str]) -> Path:
    """Run (or reuse) each method or variant with `config`'s other settings; write compare.md/.csv/.png.

    Returns the folder `<runs_dir>/compare-<stream>-seed<seed>`."""
    entries = [parse_method_entry(m) for m in methods]
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"compare: an entry is listed twice in {labels}")
    run_configs = [e.run_config(config) for e in entries]  # every entry is checked before anything runs
    rows = [method_row(e.label, run(c)) for e, c in zip(entries, run_configs, strict=True)]
    return write_comparison(rows, compare_folder(config))


def compare_folder(config: RunConfig, seeds: list[int] | None = None, prefix: str = "compare") -> Path:
    """`<runs_dir>/<prefix>-<stream>-seed<seed>`, or `...-seeds<a>-<b>-...` for a table over seeds."""
    stream = safe_name(stream_title(config.stream.name))
    tail = f"seeds{'-'.join(map(str, seeds))}" if seeds is not None else f"seed{config.seed}"
    return Path(config.runs_dir) / f"{prefix}-{stream}-{tail}"


def write_comparison(rows: list[MethodRow], folder: Path) -> Path:
    """compare.md, compare.csv and compare.png of `rows` in `folder`."""
    write_tables(rows, folder)
    plot_comparison(rows, folder / "compare.png")
    return folder


def compare_seeds(config: RunConfig, methods: list[str], seeds: list[int]) -> Path:
    """`compare` once per seed, then one table of mean +- sd over the seeds for every numeric column.

    Numbers are deterministic for one seed on one machine with one thread count and torch build; across
    machines they are not, which is why results are reported as seed means. Returns
    `<runs_dir>/compare-<stream>-seeds<a>-<b>-...` holding compare.md and compare.csv (mean and sd columns)."""
    return over_seeds(seeds, lambda seed: compare(replace(config, seed=seed), methods), compare_folder(config, seeds))


def over_seeds(seeds: list[int], compare_one: Callable[[int], Path], folder: Path) -> Path:
    """Run `compare_one(seed)` (it returns a folder holding compare.csv) for every seed, then write the
    mean +- sd table of those tables into `folder`."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"compare: seeds must be distinct and at least one, got {seeds}")
    tables = [read_csv_rows(compare_one(seed) / "compare.csv") for seed in seeds]
    write_seed_tables(tables, seeds, folder)
    return folder


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def write_seed_tables(tables: list[list[dict[str, str]]], seeds: list[int], folder: Path) -> None:
    """Mean +- sample sd (n-1) per method and numeric column over the seeds' tables."""
    head = list(tables[0][0])
    markdown = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    rows_csv = []
    for k, first in enumerate(tables[0]):
        cells, record = [first["method"]], {"method": first["method"], "seeds": " ".join(map(str, seeds))}
        for column in head[1:]:
            values = [_number(t[k][column]) for t in tables]
            if any(v is None for v in values):
                cells.append("n/a")
                continue
            mean = statistics.fmean(values)  # type: ignore[arg-type]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0  # type: ignore[arg-type]
            digits = 2 if abs(mean) < 1 else 1
            cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
            record[column], record[f"{column} sd"] = mean, sd
        markdown.append("| " + " | ".join(cells) + " |")
        rows_csv.append(record)
    markdown.append(f"\nmean ± sd over seeds {', '.join(map(str, seeds))}")
    write_text(folder / "compare.md", "\n".join(markdown) + "\n")
    buffer = io.StringIO()
    fields = ["method", "seeds"] + [name for column in head[1:] for name in (column, f"{column} sd")]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows_csv)
    write_text(folder / "compare.csv", buffer.getvalue())


def write_tables(rows: list[MethodRow], folder: Path) -> None:
    table = [r.cells() for r in rows]
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for cells in table:
        lines.append("| " + " | ".join(_show(cells[k]) for k in head) + " |")
    write_text(folder / "compare.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=head)
    writer.writeheader()
    writer.writerows(table)
    write_text(folder / "compare.csv", buffer.getvalue())


def _show(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) or value is None:
        return fmt(value, 2 if isinstance(value, float) and abs(value) < 1 else 1)
    return str(value)


def plot_comparison(rows: list[MethodRow], path: Path) -> Path:
    """Left: each method's score on the first task as later tasks arrive. Right: MFN per method.

    The figure grows with the number of rows, so a long comparison (a sweep) stays readable."""
    height = max(4.0, 0.22 * len(rows) + 2.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1.3, 1]})
    for i, r in enumerate(rows):
        first = [row[0] for row in r.result.matrix.rows]
        style = ("-", "--", ":", "-.")[i // 10 % 4]  # the colour cycle repeats every 10 lines
        left.plot(range(len(first)), first, marker="o", markersize=3, linestyle=style, label=r.method)
    names = ["base"] + rows[0].result.matrix.task_names if rows else []
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    left.set_ylabel(f"score on {rows[0].result.matrix.task_names[0]}" if rows else "score")
    left.set_title("first task as later tasks arrive")
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=2 if len(rows) > 8 else 1,
                frameon=False)
    labels = [r.method for r in rows]
    right.barh(range(len(rows)), [r.result.metrics.mfn or 0.0 for r in rows])
    right.set_yticks(range(len(rows)), labels, fontsize=7)
    right.invert_yaxis()  # first method on top, as in the table
    right.set_xlabel("MFN (Last)")
    right.set_title("final average score")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path
