"""Stage schedules: homogeneous and heterogeneous settings, task and capability scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from citkit.data.streams import packaged_streams
from citkit.errors import ConfigError
from citkit.federated.config import FederatedConfig
from citkit.federated.schedule import (
    Schedule,
    Unit,
    build_schedule,
    generate_heterogeneous,
    packaged_schedules,
    read_schedule_file,
    schedule_units,
)

TASKS = ["t0", "t1", "t2", "t3", "t4", "t5"]


def test_homogeneous_task_scenario_is_one_task_per_stage() -> None:
    schedule = build_schedule(FederatedConfig(), TASKS, seed=0)
    assert schedule.stages == tuple((t,) for t in TASKS)
    assert schedule.met_by(2) == ["t0", "t1", "t2"]
    assert set(schedule.client_units(0, 10, seed=0)) == {"t0"}


def test_capability_units_default_to_pairs_and_accept_named_groups() -> None:
    pairs = build_schedule(FederatedConfig(scenario="capability"), TASKS, seed=0)
    assert [u.tasks for u in pairs.units] == [("t0", "t1"), ("t2", "t3"), ("t4", "t5")]
    named = build_schedule(FederatedConfig(scenario="capability", capability_groups=("a=t0+t3", "b=t1+t2+t4+t5")),
                           TASKS, seed=0)
    assert named.unit_names == ["a", "b"] and named.unit("b").tasks == ("t1", "t2", "t4", "t5")
    with pytest.raises(ConfigError, match="unknown task"):
        build_schedule(FederatedConfig(scenario="capability", capability_groups=("t0+nope",)), TASKS, seed=0)
    with pytest.raises(ConfigError, match="in two groups"):
        build_schedule(FederatedConfig(scenario="capability", capability_groups=("t0+t1", "t1+t2")), TASKS, seed=0)


def test_heterogeneous_stages_mix_past_and_future_units_that_recur() -> None:
    stages = generate_heterogeneous(TASKS, per_stage=3, seed=0)
    assert len(stages) == len(TASKS) and all(len(s) == 3 and TASKS[i] in s for i, s in enumerate(stages))
    assert any(TASKS.index(u) > i for i, s in enumerate(stages) for u in s)  # a future unit appears early
    assert sum(len(s) for s in stages) > len(set().union(*stages))           # units recur
    assert generate_heterogeneous(TASKS, 3, seed=0) == stages != generate_heterogeneous(TASKS, 3, seed=1)
    schedule = build_schedule(FederatedConfig(setting="heterogeneous"), TASKS, seed=0)
    held = schedule.client_units(1, 9, seed=0)
    assert set(held) == set(schedule.stages[1]) and all(held.count(u) == 3 for u in schedule.stages[1])


def test_schedule_file_is_the_declarative_form(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text("stages:\n" + "".join(f"  - [{', '.join(TASKS[i:i + 2] or TASKS[:1])}]\n" for i in range(6)))
    schedule = build_schedule(FederatedConfig(setting="heterogeneous", schedule_file=str(path)), TASKS, seed=0)
    assert schedule.stages[0] == ("t0", "t1") and schedule.stages[5] == ("t5",)
    assert schedule.met_by(0) == ["t0", "t1"]
    path.write_text("stages:\n  - [t0]\n")
    with pytest.raises(ConfigError, match="must list 6 stages"):
        build_schedule(FederatedConfig(setting="heterogeneous", schedule_file=str(path)), TASKS, seed=0)
    path.write_text("stages:\n" + "  - [t0]\n" * 6)
    with pytest.raises(ConfigError, match="in no stage"):
        build_schedule(FederatedConfig(setting="heterogeneous", schedule_file=str(path)), TASKS, seed=0)


def packaged_stream_tasks(name: str) -> list[str]:
    """A packaged stream's task names, read from its definition (no data needed)."""
    spec = yaml.safe_load(packaged_streams()[name].read_text(encoding="utf-8"))
    return [t["name"] for t in spec["tasks"]]


@pytest.mark.parametrize("stream", ["fcit-task", "fcit-capability"])
def test_packaged_fcit_schedules_load_and_are_square(stream: str) -> None:
    tasks = packaged_stream_tasks(stream)
    path = packaged_schedules()[stream]
    assert sorted(schedule_units(path)) == sorted(tasks)
    stages = read_schedule_file(path, tasks)
    assert len(stages) == len(tasks) and all(len(s) == 5 for s in stages)  # 5 sampled clients a round
    schedule = build_schedule(FederatedConfig(setting="heterogeneous"), tasks, seed=0, stream=stream)
    assert schedule.stages == stages and "FCIT authors" in schedule.source


def test_packaged_task_schedule_first_stage_is_the_authors() -> None:
    """The spec: their task-related first stage holds tasks 2, 3, 5, 6, 7 (1-based) and not task 1."""
    tasks = packaged_stream_tasks("fcit-task")
    stages = read_schedule_file(packaged_schedules()["fcit-task"], tasks)
    assert set(stages[0]) == {tasks[i - 1] for i in (2, 3, 5, 6, 7)} and tasks[0] not in stages[0]
    assert stages[1].count("super-clevr") == 2  # a repeated entry is a larger share of the clients
    held = Schedule(tuple(Unit(t, (t,)) for t in tasks), stages).client_units(1, 10, seed=0)
    assert held.count("super-clevr") == 4 and held.count("ocr-vqa") == 2


def test_schedule_file_wins_and_other_streams_use_the_generator(tmp_path: Path) -> None:
    tasks = packaged_stream_tasks("fcit-task")
    path = tmp_path / "mine.yaml"
    path.write_text("stages:\n" + "".join(f"  - [{t}]\n" for t in tasks))
    mine = build_schedule(FederatedConfig(setting="heterogeneous", schedule_file=str(path)), tasks, 0, "fcit-task")
    assert mine.stages == tuple((t,) for t in tasks)
    for stream, names in (("toy", tasks), ("fcit-task", tasks[:4])):  # another stream; a subset of the tasks
        schedule = build_schedule(FederatedConfig(setting="heterogeneous"), names, 0, stream)
        assert schedule.stages == generate_heterogeneous(names, 3, seed=0) and "generator" in schedule.source
