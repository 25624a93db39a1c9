"""Declarative stage schedules: which units each stage holds, for the FCIT settings and scenarios.

- task-related scenario: a unit is one task of the stream; capability-related: a group of tasks whose
  data is united (`federated.capability_groups`).
- homogeneous: stage s holds unit s only, on every client.
- heterogeneous: stage s holds several units, past and future ones, recurring; each client of the stage
  holds one of them. The stages come from a YAML file (`stages: [[unit, ...], ...]`, the form of the
  FCIT authors' hard-coded per-stage lists; a unit listed twice gets twice the clients), by default for
  the packaged FCIT streams from the authors' own lists (`configs/streams/schedules/<stream>.yaml`), else
  from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from citkit.errors import ConfigError
from citkit.federated.config import FederatedConfig


@dataclass(frozen=True)
class Unit:
    """What a stage's client data is drawn from: one task, or the union of a group of tasks."""

    name: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class Schedule:
    """Units (the accuracy matrix's columns) and, per stage, the units its clients hold (a unit listed
    k times holds k shares of the stage's clients)."""

    units: tuple[Unit, ...]
    stages: tuple[tuple[str, ...], ...]
    source: str = "homogeneous"  # where the stages came from: a file, the packaged lists, the generator

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def unit(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)

    def met_by(self, stage: int) -> list[str]:
        """Units that occurred in stages 0..stage, in unit order (what FCIT scores after the stage)."""
        seen = {u for s in self.stages[: stage + 1] for u in s}
        return [u for u in self.unit_names if u in seen]

    def client_units(self, stage: int, num_clients: int, seed: int) -> list[str]:
        """The unit each client holds in `stage`: the stage's entries dealt round-robin over a seeded
        permutation of the clients, so every entry has ceil or floor(C / entries) clients (a unit listed
        twice, twice that)."""
        units = self.stages[stage]
        order = np.random.default_rng([seed, stage, 7]).permutation(num_clients)
        held = [""] * num_clients
        for position, client in enumerate(order):
            held[int(client)] = units[position % len(units)]
        return held


def capability_units(groups: tuple[str, ...], tasks: list[str]) -> tuple[Unit, ...]:
    """'name=a+b' or 'a+b' entries; default: consecutive pairs of the stream's tasks."""
    if not groups:
        groups = tuple("+".join(tasks[i:i + 2]) for i in range(0, len(tasks), 2))
    units, used = [], set()
    for entry in groups:
        name, _, members = entry.rpartition("=")
        names = tuple(m.strip() for m in members.split("+") if m.strip())
        unknown = [m for m in names if m not in tasks]
        if unknown or not names:
            raise ConfigError(f"federated.capability_groups entry {entry!r}: unknown task {unknown[:1] or '(none)'}; "
                              f"the stream has {', '.join(tasks)}")
        if used & set(names):
            raise ConfigError(f"federated.capability_groups: task {sorted(used & set(names))[0]!r} is in two groups")
        used |= set(names)
        units.append(Unit(name.strip() or "+".join(names), names))
    return tuple(units)


def build_schedule(config: FederatedConfig, tasks: list[str], seed: int, stream: str = "") -> Schedule:
    """The schedule of a run: units from the scenario, stages from the setting. Heterogeneous stages come
    from `config.schedule_file`, else from the packaged lists of `stream` (the FCIT authors' own, for
    fcit-task and fcit-capability) when its units are those lists' units, else from the generator; the
    report says which (`Schedule.source`)."""
    units = (tuple(Unit(t, (t,)) for t in tasks) if config.scenario == "task"
             else capability_units(config.capability_groups, tasks))
    names = [u.name for u in units]
    if config.setting == "homogeneous":
        return Schedule(units, tuple((n,) for n in names))
    if config.schedule_file:
        return Schedule(units, read_schedule_file(Path(config.schedule_file), names), config.schedule_file)
    packaged = packaged_schedules().get(stream)
    if packaged is not None and set(schedule_units(packaged)) == set(names):  # not with a subset of the tasks
        return Schedule(units, read_schedule_file(packaged, names), f"the FCIT authors' lists ({packaged.name})")
    return Schedule(units, generate_heterogeneous(names, config.units_per_stage, seed),
                    f"generator (units_per_stage={config.units_per_stage}, seed {seed})")


def packaged_schedules() -> dict[str, Path]:
    """Heterogeneous schedules shipped with citkit, by the name of the stream they belong to."""
    folder = resources.files("citkit") / "configs" / "streams" / "schedules"
    if not folder.is_dir():
        return {}
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def schedule_units(path: Path) -> list[str]:
    """The unit names a schedule file mentions, in order of first mention."""
    stages = _raw_stages(path)
    names = [u for stage in stages if isinstance(stage, list) for u in stage] if isinstance(stages, list) else []
    return list(dict.fromkeys(str(u) for u in names))


def _raw_stages(path: Path) -> object:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return data.get("stages") if isinstance(data, dict) else None


def generate_heterogeneous(units: list[str], per_stage: int, seed: int) -> tuple[tuple[str, ...], ...]:
    """Stage s holds unit s plus `per_stage - 1` others drawn (seeded) from every other unit, past or
    future, so units recur and a stage can hold units not yet 'due'. Units are listed in unit order."""
    rng = np.random.default_rng([seed, 11])
    count = min(per_stage, len(units))
    stages = []
    for unit in units:
        others = [u for u in units if u != unit]
        picked = {unit} | {others[i] for i in rng.choice(len(others), count - 1, replace=False)} if others else {unit}
        stages.append(tuple(u for u in units if u in picked))
    return tuple(stages)


def read_schedule_file(path: Path, units: list[str]) -> tuple[tuple[str, ...], ...]:
    """`stages:` a list (one per unit: the matrix is square) of non-empty lists of unit names. Each stage
    comes back in unit order, a unit repeated as often as it is listed (its share of the clients)."""
    if not path.is_file():
        raise ConfigError(f"federated.schedule_file {path} not found")
    stages = _raw_stages(path)
    if not isinstance(stages, list) or len(stages) != len(units):
        raise ConfigError(f"{path}: 'stages' must list {len(units)} stages (one per unit: {', '.join(units)}), "
                          f"got {len(stages) if isinstance(stages, list) else stages!r}")
    out = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, list) or not stage or any(u not in units for u in stage):
            raise ConfigError(f"{path} stage {i}: expected a non-empty list of units from {', '.join(units)}, "
                              f"got {stage!r}")
        out.append(tuple(u for u in units for _ in range(stage.count(u))))
    if {u for s in out for u in s} != set(units):
        missing = sorted(set(units) - {u for s in out for u in s})
        raise ConfigError(f"{path}: unit {missing[0]!r} is in no stage; every unit must be trained once")
    return tuple(out)
