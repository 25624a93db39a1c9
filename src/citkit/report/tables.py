"""Markdown tables and the report of a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from citkit.eval.matrix import AccuracyMatrix
from citkit.eval.metrics import METRIC_LABELS, Metrics
from citkit.io import read_json, write_text


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table; undefined metrics are shown as 'n/a', never as 0."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def metrics_table(metrics: Metrics) -> str:
    data = metrics.as_dict()
    head = "| " + " | ".join(METRIC_LABELS[k] for k in data) + " |"
    return "\n".join([head, "|---" * len(data) + "|", "| " + " | ".join(fmt(v) for v in data.values()) + " |"])


def efficiency_table(tasks: list[dict[str, Any]]) -> str:
    lines = ["| task | steps | train s | trainable params | stored params | eval ms/sample | final loss |",
             "|---|---|---|---|---|---|---|"]
    for t in tasks:
        loss = ", ".join(f"{k} {v:.3g}" for k, v in t["final_loss"].items())
        lines.append(f"| {t['task']} | {t['steps']} | {t['train_seconds']:.1f} | {t['trainable_parameters']:,} | "
                     f"{t['stored_parameters']:,} | {1000 * t['eval_seconds_per_sample']:.2f} | {loss} |")
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> Path:
    """report.md of a run directory, from its matrix, config and task log."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    matrix = AccuracyMatrix.load(run_dir)
    tasks_path = run_dir / "tasks.json"
    tasks = read_json(tasks_path) if tasks_path.exists() else []
    parts = [f"# citkit run `{run_dir.name}`", "",
             f"Method **{config['method']}** on stream **{config['stream']['name']}**, model `{config['model']['path']}`, "
             f"seed {config['seed']}.", "", "## Accuracy matrix", "",
             "Row t: scores after training through task t (row 0: the base model, zero-shot).", "",
             matrix.to_markdown(), "", "## Metrics", "", metrics_table(matrix.metrics()), ""]
    if tasks:
        parts += ["## Training and inference cost", "", efficiency_table(tasks), ""]
    return write_text(run_dir / "report.md", "\n".join(parts))
