"""`citkit fed compare`: several federated runs side by side, in the table of `citkit compare`.

An entry is a method or a variant, `METHOD[:OPTION=VALUE...]` as in `citkit compare`; an option under
`federated.` changes the federation for that entry only, so one table can hold methods, strategies and
settings: `lora-ft`, `disco`, `lora-ft:federated.strategy=fedprox:federated.strategy_options.proximal_mu=0.01`,
`disco:federated.setting=heterogeneous`. Every other setting (stream, model, clients, rounds, beta, ...)
is the command's and shared by all entries.

A plain entry runs in the directory `citkit fed run` would use with the same settings
(`<stream>-fed-<method>-<strategy>-<setting>-<scenario>-b<beta>-seed<seed>`); a variant in one named after
its label. A finished run is read, not retrained; an interrupted one resumes; a missing one runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from citkit.compare import MethodEntry, compare_folder, method_row, over_seeds, parse_method_entry, write_comparison
from citkit.config import from_dict, to_dict
from citkit.errors import ConfigError
from citkit.federated.config import FedRunConfig
from citkit.run_config import safe_name
from citkit.runner import RunResult

FOLDER_PREFIX = "fed-compare"


def entry_config(entry: MethodEntry, base: FedRunConfig) -> FedRunConfig:
    """`base` with the entry's method, method options and `federated.` options."""
    options = dict(entry.options)
    federated = options.pop("federated", {})
    if not isinstance(federated, dict):
        raise ConfigError(f"fed compare entry {entry.label!r}: use federated.NAME=VALUE")
    run = replace(base.run, method=entry.method, method_options=options, name="")
    config = from_dict(FedRunConfig, {"run": run, "federated": to_dict(base.federated) | federated})
    if not entry.options:
        return config  # the directory `citkit fed run` uses: a finished run is shared
    return replace(config, run=replace(run, name=run.default_name(config.default_label(safe_name(entry.label)))))


def fed_compare(config: FedRunConfig, methods: list[str], backend: str = "in-process") -> Path:
    """Run (or reuse) every entry with `config`'s other settings; write compare.md/.csv/.png with Last and
    Avg (MFN, MAA), FCIT's Last and Avg over the units met so far, and the bytes each run sent.

    Returns the folder `<runs_dir>/fed-compare-<stream>-seed<seed>`."""
    from citkit.federated.runner import run

    entries = [parse_method_entry(m) for m in methods]
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"fed compare: an entry is listed twice in {labels}")
    configs = [entry_config(e, config) for e in entries]  # every entry is checked before anything runs
    names = [c.run_name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"fed compare: two entries run in the same directory ({names}); give them other options")
    rows = []
    for entry, entry_run in zip(entries, configs, strict=True):
        result = run(entry_run, backend=backend)
        rows.append(method_row(entry.label, RunResult(result.run_dir, result.matrix, result.matrix.metrics()),
                               federated_columns(result.metrics)))
    return write_comparison(rows, compare_folder(config.run, prefix=FOLDER_PREFIX))


def fed_compare_seeds(config: FedRunConfig, methods: list[str], seeds: list[int],
                      backend: str = "in-process") -> Path:
    """`fed_compare` once per seed, then one table of mean +- sd over the seeds (as `citkit compare --seeds`)."""
    def one(seed: int) -> Path:
        return fed_compare(replace(config, run=replace(config.run, seed=seed)), methods, backend)

    return over_seeds(seeds, one, compare_folder(config.run, seeds, prefix=FOLDER_PREFIX))


def federated_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """The federated run's own columns: FCIT's Last/Avg (units met so far) and its traffic."""
    return {"FCIT Last": metrics["fcit_last"], "FCIT Avg": metrics["fcit_avg"],
            "bytes down": metrics["bytes_down"], "bytes up": metrics["bytes_up"],
            "client failures": metrics["client_failures"]}
