"""DISCO in a federation and on the tiny model: per-sample activation in mixed batches, slots shared by
clients with the same instructions and split by different ones, untouched slots."""

from __future__ import annotations

from pathlib import Path

import torch

from citkit.federated.federation import ClientWorker, Federation, full_state
from citkit.federated.runner import run
from citkit.federated.schedule import Schedule, Unit
from citkit.federated.server import unit_inference
from citkit.io import load_tensors, read_json

from .helpers import small_config


def distinct_tasks(runs_dir: Path) -> list[str]:
    """Two toy tasks whose instructions DISCO tells apart (identity-token cosine below its threshold)."""
    federation = Federation(small_config(runs_dir, method="disco", tasks=99))
    worker = ClientWorker(federation)
    model = worker.build()
    tokens = torch.stack([worker.method.identity_token(t, model)[0] for t in federation.tasks])
    cos = torch.nn.functional.normalize(tokens, dim=-1) @ torch.nn.functional.normalize(tokens, dim=-1).T
    i, j = divmod(int(cos.argmin()), len(tokens))
    return [federation.tasks[i].name, federation.tasks[j].name]


def test_softmax_activation_routes_per_sample_on_the_tiny_model(tmp_path: Path) -> None:
    names = distinct_tasks(tmp_path)
    federation = Federation(small_config(tmp_path, method="disco", tasks=99))
    worker = ClientWorker(federation)
    model = worker.build()
    method = worker.method
    tasks = [next(t for t in federation.tasks if t.name == n) for n in names]
    tokens = torch.zeros(method.config.num_subspaces, model.config.text_config.hidden_size)
    tokens[0], _ = method.identity_token(tasks[0], model)
    tokens[3], _ = method.identity_token(tasks[1], model)
    counts = torch.zeros(method.config.num_subspaces)
    counts[0] = counts[3] = 10
    method.load_state_dict({"tokens": tokens, "counts": counts})
    mixed = [tasks[0].test[0], tasks[1].test[0], tasks[0].test[1], tasks[1].test[1]]
    batch = tasks[0].collate([tasks[0].encode_prompt(s) for s in mixed], padding_side="left")
    weights = method.routing_weights(batch, model)
    assert weights.argmax(1).tolist() == [0, 3, 0, 3]
    assert torch.allclose(weights.sum(1), torch.ones(4)) and weights[:, [1, 2, 4, 5, 6, 7]].abs().max() == 0


def test_federated_slots_same_instructions_share_different_split_and_others_untouched(tmp_path: Path) -> None:
    names = distinct_tasks(tmp_path)
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(f"stages:\n  - [{names[0]}, {names[1]}]\n  - [{names[0]}, {names[1]}]\n")
    config = small_config(tmp_path, method="disco", tasks=99, name="disco-slots",
                          federated={"num_clients": 4, "clients_per_round": 4, "rounds_per_stage": 2,
                                     "local_epochs": 1.0, "setting": "heterogeneous",
                                     "schedule_file": str(schedule)})
    config = type(config)(run=type(config.run)(**{**config.run.__dict__,
                                                  "stream": type(config.run.stream)(**{**config.run.stream.__dict__,
                                                                                       "tasks": tuple(names)})}),
                          federated=config.federated)
    result = run(config)
    federation = Federation(config)
    held = federation.client_units(0)
    rounds = read_json(result.run_dir / "rounds.json")
    second = rounds[1]["assignment"]  # stage 0, round 1: the server's groups decide
    slots = {int(c): s for c, s in second.items()}
    for a in slots:
        for b in slots:
            assert (slots[a] == slots[b]) == (held[a] == held[b])
    assert rounds[0]["assignment"] == {str(c): 0 for c in range(4)}  # very first round: everyone on slot 0
    trained = set(slots.values())
    initial = full_state(*(lambda w: (w.method, w.build()))(ClientWorker(federation)))
    after = load_tensors(result.run_dir / "checkpoints" / "task_1" / "adapter.safetensors")
    for key, value in after.items():
        slot = int(key.rsplit(".", 1)[1])
        assert torch.equal(value, initial[key]) == (slot not in trained), key
    one_slot = rounds[0]["bytes_whole_state"] / 8  # each of 4 clients sends one slot of 8, plus its token
    assert 4 * one_slot <= rounds[0]["bytes_up"] < 4 * one_slot * 1.05
    # The routing report: each task's own slot is the one trained on most of its samples over the rounds.
    trained_on: dict[str, dict[int, int]] = {}
    for r in rounds:
        for client, slot in r["assignment"].items():
            for sample in federation.client_samples(r["stage"])[int(client)]:
                trained_on.setdefault(sample.task, {}).setdefault(slot, 0)
                trained_on[sample.task][slot] += 1
    expected = {task: max(sorted(counts), key=lambda k: counts[k]) for task, counts in trained_on.items()}
    stages = read_json(result.run_dir / "tasks.json")
    last = stages[-1]["inference"]
    assert {t: r["expert"] for t, r in last["task_routing"].items()} == expected
    assert set(last["routing"]) == set(names) and all(0 <= r["argmax"] <= 100 for r in last["routing"].values())
    assert "own slot" in (result.run_dir / "report.md").read_text()


def test_unit_routing_is_the_sample_weighted_mean_of_its_tasks() -> None:
    schedule = Schedule(units=(Unit("reading", ("a", "b")), Unit("c", ("c",))), stages=(("reading",), ("c",)))
    report = {"routing": {"a": {"argmax": 100.0, "weight": 90.0, "samples": 30, "expert": 0},
                          "b": {"argmax": 40.0, "weight": 50.0, "samples": 10, "expert": 1}}, "routing_target": "slot"}
    units = unit_inference(report, schedule)
    assert units["routing"] == {"reading": {"argmax": 85.0, "weight": 80.0, "samples": 40}}
    assert units["task_routing"] == report["routing"] and units["routing_target"] == "slot"
    assert unit_inference({}, schedule) == {}
