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


def routing_table(tasks: list[dict[str, Any]], names: list[str]) -> str:
    """Rows: after each task; cells: the router's argmax accuracy / mean weight on the true task (%), for the
    tasks trained so far. Empty when no row has a routing report."""
    rows = [(t["task"], t.get("inference", {}).get("routing")) for t in tasks]
    if not any(routing for _, routing in rows):
        return ""
    lines = ["| after \\ task | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]
    for after, routing in rows:
        routing = routing or {}
        cells = [f"{routing[n]['argmax']:.1f} / {routing[n]['weight']:.1f}" if n in routing else "" for n in names]
        done = list(routing.values())
        mean = (f"{sum(r['argmax'] for r in done) / len(done):.1f} / {sum(r['weight'] for r in done) / len(done):.1f}"
                if done else "")
        lines.append(f"| {after} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def routing_target(tasks: list[dict[str, Any]]) -> str:
    """What the routing numbers count as a sample's own expert: 'task' (HiDe-LLaVA) or 'slot' (DISCO)."""
    return next((t["inference"]["routing_target"] for t in tasks if "routing_target" in t.get("inference", {})),
                "task")


def write_report(run_dir: str | Path) -> Path:
    """report.md of a run directory, from its matrix, config and task log."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    matrix = AccuracyMatrix.load(run_dir)
    tasks_path = run_dir / "tasks.json"
    tasks = read_json(tasks_path) if tasks_path.exists() else []
    parts = [f"# citkit run `{run_dir.name}`", "",
             f"Method **{config['method']}** on stream **{config['stream']['name']}**, "
             f"model `{config['model']['path']}`, "
             f"seed {config['seed']}.", "", "## Accuracy matrix", "",
             "Row t: scores after training through task t (row 0: the base model, zero-shot).", "",
             matrix.to_markdown(), "", "## Metrics", "", metrics_table(matrix.metrics()), ""]
    if tasks:
        parts += ["## Training and inference cost", "", efficiency_table(tasks), ""]
    routing = routing_table(tasks, matrix.task_names)
    if routing:
        oracle = " The run used oracle routing (method.oracle_routing), so its scores did not depend on it." \
            if config.get("method_options", {}).get("oracle_routing") else ""
        target = ("own slot (the one trained on most of its task's samples)" if routing_target(tasks) == "slot"
                  else "own task")
        parts += ["## Routing", "", f"How often the router puts its largest weight on a test sample's {target} / the "
                  f"mean weight it puts there (%), over each trained task's test set.{oracle}", "", routing, ""]
    return write_text(run_dir / "report.md", "\n".join(parts))
