"""What `citkit fed ...` calls: building a FedRunConfig from the command line, and the printed result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from citkit.config import describe, from_dict, parse_override, set_path
from citkit.errors import CitkitError
from citkit.run_config import RunConfig, build_run_config
from citkit.rundir import saved_settings

# command-line flag -> federated setting
FLAGS = {"clients": "num_clients", "clients_per_round": "clients_per_round", "rounds": "rounds_per_stage",
         "local_epochs": "local_epochs", "beta": "beta", "setting": "setting", "scenario": "scenario",
         "strategy": "strategy", "partition": "partition"}


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(--set values for the run, --set values for the federation: those starting with 'federated.')."""
    federated = [o for o in overrides if o.startswith("federated.")]
    return [o for o in overrides if not o.startswith("federated.")], federated


def fed_config(run: RunConfig, overrides: list[str], flags: dict[str, Any]) -> Any:
    """A FedRunConfig from a built RunConfig, `federated.NAME=VALUE` overrides and flag values."""
    from citkit.federated.config import FedRunConfig

    data: dict[str, Any] = {}
    for key, value in flags.items():
        if value is not None and key in FLAGS:
            data[FLAGS[key]] = value
    for text in overrides:
        path, value = parse_override(text)
        set_path(data, path[1:], value)
    return from_dict(FedRunConfig, {"run": run, "federated": data})


def resume_config(run_dir: Path, quiet: bool) -> Any:
    """The FedRunConfig saved in a federated run directory."""
    from citkit.federated.config import FedRunConfig

    saved = saved_settings(run_dir)
    federated = saved.pop("federated", None)
    if federated is None:
        raise CitkitError(f"{run_dir} is a centralised run; use `citkit resume`")
    run = build_run_config(saved, ["train.progress=false"] if quiet else [])
    return from_dict(FedRunConfig, {"run": run, "federated": federated})


def settings_help() -> str:
    from citkit.federated.config import FederatedConfig

    return "Federation settings (flags above, or --set federated.NAME=VALUE):\n" + "\n".join(
        f"  federated.{name} (default {default}): {help_}" for name, default, help_ in describe(FederatedConfig))


def strategies_text() -> str:
    from citkit.federated.strategies import STRATEGIES, strategy_options

    lines = []
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        options = ", ".join(f"{k}={v}" for k, v in strategy_options(cls).items()) or "no options"
        lines.append(f"{name}: flwr.serverapp.strategy.{cls.__name__} ({options})")
    return "\n".join(lines)


def result_text(result: Any) -> str:
    m = result.metrics
    def f(key: str) -> str:
        return "n/a" if m.get(key) is None else f"{m[key]:.1f}"
    return "\n".join([
        f"run directory: {result.run_dir}", result.matrix.to_markdown(), "",
        f"Last (MFN) {f('mfn')}, Avg (MAA) {f('maa')}, BWT {f('bwt')}; FCIT Last {f('fcit_last')}, "
        f"FCIT Avg {f('fcit_avg')} (over the units met so far)",
        f"bytes to clients {m['bytes_down']:,}, from clients {m['bytes_up']:,} (the whole adapter state each way: "
        f"{m['bytes_whole_state_down']:,} / {m['bytes_whole_state_up']:,}); client failures {m['client_failures']}"])


