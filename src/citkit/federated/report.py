"""The report of a federated run: the centralised report plus FCIT's metrics, rounds and bytes."""

from __future__ import annotations

from typing import Any

from citkit.eval.matrix import AccuracyMatrix
from citkit.federated.config import FedRunConfig
from citkit.federated.federation import Federation
from citkit.federated.rundir import FederatedRunDirectory
from citkit.federated.server import fcit_metrics
from citkit.io import read_json, write_json, write_text
from citkit.report.plots import plot_matrix
from citkit.report.tables import fmt, write_report


def communication(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the run: bytes each way against sending the whole adapter state each way, failures."""
    down = sum(r["bytes_down"] for r in rounds)
    up = sum(r["bytes_up"] for r in rounds)
    whole_down = sum(r["bytes_whole_state"] * len(r["clients"]) for r in rounds)
    whole_up = sum(r["bytes_whole_state"] * len(r["replied"]) for r in rounds)
    return {"bytes_down": down, "bytes_up": up, "bytes_whole_state_down": whole_down,
            "bytes_whole_state_up": whole_up, "rounds": len(rounds),
            "client_failures": sum(len(r["failed"]) for r in rounds)}


def finish_federated(run_dir: FederatedRunDirectory, config: FedRunConfig, federation: Federation,
                     matrix: AccuracyMatrix) -> dict[str, float | None]:
    """metrics.json, report.md and matrix.png once every stage has finished; the metrics either way."""
    met = [federation.schedule.met_by(s) for s in range(federation.num_stages)]
    metrics: dict[str, Any] = matrix.metrics().as_dict() | fcit_metrics(matrix, met)
    rounds_path = run_dir.path / "rounds.json"
    rounds = read_json(rounds_path) if rounds_path.exists() else []
    metrics |= communication(rounds)
    if not matrix.is_complete:
        return metrics
    write_json(run_dir.path / "metrics.json", metrics)
    write_report(run_dir.path)
    section = federated_section(config, federation, metrics, rounds)
    write_text(run_dir.path / "federation.md", section)  # kept apart too: `citkit report` rewrites report.md
    report = (run_dir.path / "report.md").read_text(encoding="utf-8")
    write_text(run_dir.path / "report.md", report + section)
    plot_matrix(matrix, run_dir.path / "matrix.png", title=f"federated {config.run.method} on {federation.stream.name}")
    return metrics


def stage_entries(units: tuple[str, ...]) -> str:
    """'a, b x2': a stage's units, with the shares of a unit listed more than once."""
    return ", ".join(f"{u} x{units.count(u)}" if units.count(u) > 1 else u for u in dict.fromkeys(units))


def federated_section(config: FedRunConfig, federation: Federation, metrics: dict[str, Any],
                      rounds: list[dict[str, Any]]) -> str:
    fed = config.federated
    stages = "; ".join(f"{i + 1}: {stage_entries(s)}" for i, s in enumerate(federation.schedule.stages))
    lines = ["## Federation", "",
             f"{fed.num_clients} clients, {fed.clients_per_round} per round, {fed.rounds_per_stage} rounds per stage, "
             f"{fed.local_epochs:g} local epoch(s); {fed.partition} split, beta {fed.beta:g}; {fed.setting} setting, "
             f"{fed.scenario} scenario; strategy {fed.strategy} {fed.strategy_options or ''}.", "",
             f"Stages (units held by their clients; from {federation.schedule.source}): {stages}.", "",
             f"FCIT Last (mean over units met so far, after the last stage): {fmt(metrics['fcit_last'])}; "
             f"FCIT Avg (that mean averaged over stages): {fmt(metrics['fcit_avg'])}.", "",
             f"Bytes sent to clients {metrics['bytes_down']:,} and received {metrics['bytes_up']:,}; sending the "
             f"whole adapter state both ways would be {metrics['bytes_whole_state_down']:,} and "
             f"{metrics['bytes_whole_state_up']:,}. Client failures: {metrics['client_failures']}.", "",
             "| stage | round | clients sampled | replied | failed | bytes down | bytes up |",
             "|---|---|---|---|---|---|---|"]
    for r in rounds:
        lines.append(f"| {r['stage'] + 1} | {r['round'] + 1} | {len(r['clients'])} | {len(r['replied'])} | "
                     f"{len(r['failed'])} | {r['bytes_down']:,} | {r['bytes_up']:,} |")
    return "\n".join(lines) + "\n"
