"""DISCO's pure slot logic, its layer, and a centralised run on the tiny model (one slot per task, the
state round trip)."""

from __future__ import annotations

import pytest
import torch

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.disco import Disco, DiscoConfig, DiscoLinear
from citkit.methods.disco.federated import DiscoCoordinator, client_slot
from citkit.methods.disco.slots import (
    activation_weights,
    align_groups,
    group_clients,
    match_slot,
    merge_token,
    own_slots,
    record_slot_samples,
)
from citkit.models.loading import load_model, load_processor

E0, E1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def test_match_slot_joins_above_the_threshold_else_takes_a_free_slot() -> None:
    tokens, counts = torch.stack([E0, E1, torch.zeros(2)]), torch.tensor([5.0, 5.0, 0.0])
    assert match_slot(torch.tensor([0.99, 0.1]), tokens, counts, 0.9) == 0
    assert match_slot(torch.tensor([0.7, 0.7]), tokens, counts, 0.9) == 2       # cos 0.71 < 0.9: a new slot
    assert match_slot(torch.tensor([0.7, 0.7]), tokens, torch.tensor([5.0, 5.0, 5.0]), 0.9) in (0, 1)  # full
    assert match_slot(E1, torch.zeros(3, 2), torch.zeros(3), 0.9) == 0           # nothing filled: slot 0


def test_grouping_and_alignment() -> None:
    tokens = torch.stack([E0, E0 * 2, E1, torch.tensor([0.6, 0.8])])
    assert group_clients(tokens, [10, 10, 10, 10], 0.9, 0.001) == [0, 0, 1, 2]
    assert group_clients(tokens, [1000, 1000, 1000, 1], 0.9, 0.001) == [0, 0, 1, 1]  # tiny singleton joins nearest
    assert group_clients(tokens, [10, 10, 10, 2], 0.9, 0.001) == [0, 0, 1, 2]         # 2 of 32: not under 0.1 %
    assert group_clients(tokens, [10, 10, 10, 2], 0.9, 0.001, min_samples=10) == [0, 0, 1, 1]  # under the floor
    known = torch.stack([E1, torch.zeros(2), torch.zeros(2)])
    assert align_groups(torch.stack([E0, E1]), [10, 5], known, torch.tensor([3.0, 0.0, 0.0]), 0.9) == [1, 0]


def test_token_merge_is_a_true_sample_weighted_mean() -> None:
    token, count = merge_token(torch.tensor([1.0, 0.0]), 2.0, torch.tensor([0.0, 1.0]), 1.0)
    assert torch.allclose(token, torch.tensor([2 / 3, 1 / 3])) and count == 3.0


def test_a_tasks_own_slot_is_the_one_trained_on_most_of_its_samples() -> None:
    table: dict[int, dict[str, int]] = {}
    record_slot_samples(table, 2, {"clock": 2})           # a late client's two samples open slot 2
    record_slot_samples(table, 0, {"clock": 600, "chart": 5})
    record_slot_samples(table, 1, {"chart": 300})
    record_slot_samples(table, 0, {"clock": 600})          # counted per round
    assert table[0] == {"clock": 1200, "chart": 5}
    assert own_slots(table) == {"clock": 0, "chart": 1}
    record_slot_samples(table, 3, {"chart": 300})
    assert own_slots(table)["chart"] == 1                  # a tie keeps the lower slot


def test_a_client_under_min_slot_samples_joins_the_nearest_slot_instead_of_opening_one() -> None:
    tokens, counts = torch.stack([E0, E1, torch.zeros(2)]), torch.tensor([100.0, 50.0, 0.0])
    late = torch.tensor([0.8, 0.6])                        # cos 0.8 (< tau 0.9) to slot 0, 0.6 to slot 1
    grouped = {"disco.group_tokens": E1[None], "disco.group_slots": torch.tensor([1])}
    authors, floor = DiscoConfig(num_subspaces=3), DiscoConfig(num_subspaces=3, min_slot_samples=10)
    for info, nearest in ((grouped, 1), ({}, 0)):          # with a stage's groups: the nearest group's slot
        assert client_slot(authors, late, tokens, counts, info, samples=2) == 2   # authors' code: a free slot
        assert client_slot(floor, late, tokens, counts, info, samples=2) == nearest
        assert client_slot(floor, late, tokens, counts, info, samples=10) == 2    # not under the floor
    empty = torch.zeros(3)                                 # nothing filled yet: the first free slot anyway
    assert client_slot(floor, late, tokens, empty, {}, samples=2) == 0
    with pytest.raises(Exception, match="min_slot_samples must be >= 0"):
        DiscoConfig(min_slot_samples=-1)


def test_the_coordinator_counts_what_each_slot_trained_on_per_round() -> None:
    coordinator = DiscoCoordinator(Disco(DiscoConfig(num_subspaces=3)))
    for round_index in (0, 1):
        coordinator.observe(0, round_index, [
            {"client": c, "samples": n, "token": E0, "slot": torch.tensor([0]), "count": torch.tensor([n]),
             "skip_ids": torch.tensor([], dtype=torch.long), "tasks": {"clock": n}} for c, n in ((0, 600), (1, 400))])
    assert coordinator.slot_samples == {0: {"clock": 2000}}
    assert coordinator.counts[0] == 1000                   # tokens merge once per client and stage
    restored = DiscoCoordinator(Disco(DiscoConfig(num_subspaces=3)))
    restored.load_state(coordinator.state())
    assert restored.slot_samples == coordinator.slot_samples
    assert coordinator.method_state()[1]["slot_samples"] == {"0": {"clock": 2000}}


def test_min_slot_samples_groups_a_small_first_round_client_with_its_nearest_group() -> None:
    reports = [{"client": c, "samples": n, "token": t, "slot": torch.tensor([0]), "count": torch.tensor([n]),
                "skip_ids": torch.tensor([], dtype=torch.long), "tasks": {}}
               for c, n, t in ((0, 600, E0), (1, 400, E1), (2, 2, torch.tensor([0.6, 0.8])))]
    for floor, groups in ((0, 3), (10, 2)):  # 2 of 1,002 samples is above the authors' 0.1 %
        coordinator = DiscoCoordinator(Disco(DiscoConfig(num_subspaces=4, min_slot_samples=floor)))
        coordinator.observe(0, 0, reports)
        assert len(coordinator.table[0][1]) == groups


def test_activation_weights() -> None:
    scores, filled = torch.tensor([[0.9, 0.5, 0.99], [0.2, 0.8, 0.0]]), torch.tensor([True, True, False])
    soft = activation_weights(scores, filled, "softmax", 0.05)
    assert torch.allclose(soft.sum(1), torch.ones(2)) and (soft[:, 2] == 0).all() and soft[0, 0] > 0.99
    assert activation_weights(scores, filled, "argmax", 0.05).tolist() == [[1, 0, 0], [0, 1, 0]]
    assert activation_weights(scores, filled, "sum", 0.05).tolist() == [[1, 1, 0], [1, 1, 0]]
    with pytest.raises(Exception, match="temperature must be > 0"):
        DiscoConfig(temperature=0)


def test_layer_routes_each_sample_of_a_mixed_batch_to_its_own_subspaces() -> None:
    torch.manual_seed(0)
    layer = DiscoLinear(torch.nn.Linear(4, 3), num_subspaces=3, rank=2, alpha=4.0, dropout=0.0)
    for b in layer.lora_B:
        torch.nn.init.normal_(b)
    x = torch.randn(2, 5, 4)  # (batch, seq, in)
    singles = []
    for sample, slot in ((0, 0), (1, 2)):
        layer.active = slot
        singles.append(layer(x[sample:sample + 1]))
    layer.active = None
    layer.routing = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(layer(x), torch.cat(singles), atol=1e-6)
    layer.routing = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert not torch.allclose(layer(x)[0], singles[0][0])


@pytest.fixture(scope="module")
def tasks(tiny_model_path, small_stream_file) -> list[TaskData]:
    stream = load_stream(StreamConfig(name=str(small_stream_file)), small_stream_file.parent)
    cache = EncodingCache(SampleEncoder(load_processor(tiny_model_path)))
    return [TaskData(task, i, cache) for i, task in enumerate(stream.tasks[:2])]


def attached(path):  # type: ignore[no-untyped-def]
    model = load_model(path)
    model.requires_grad_(False)
    method = Disco(DiscoConfig(num_subspaces=3))
    method.remember_base(model)
    return method.attach(model), method


def test_centralised_tasks_take_their_own_slot_and_the_state_round_trips(tiny_model_path, tasks) -> None:
    model, method = attached(tiny_model_path)
    engine = Engine(TrainConfig(max_steps=3, batch_size=4, lr=1e-2, progress=False), cpu=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for task in tasks:
        model, _ = engine.fit_task(model, method, task, [], seed=task.index)
        if task.index == 0:
            changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
            assert changed and all(n.endswith((".lora_A.0", ".lora_B.0")) for n in changed)  # only slot 0 trained
    assert method.counts.tolist() == [len(tasks[0].train), len(tasks[1].train), 0.0]
    assert not any(p.requires_grad for p in model.parameters())  # nothing left trainable after a task
    state, tensors, extra = method.trainable_state(model), method.state_dict(), method.extra_state()
    restored, again = attached(tiny_model_path)
    again.load_trainable_state(restored, state)
    again.load_state_dict(tensors)
    again.load_extra_state(extra)
    prompts = [tasks[0].encode_prompt(s) for s in tasks[0].test[:2]] + [tasks[1].encode_prompt(tasks[1].test[0])]
    batch = tasks[0].collate(prompts, padding_side="left")
    model.eval(), restored.eval()
    with torch.no_grad(), method.route(batch, model):
        expected = model(**batch).logits
    with torch.no_grad(), again.route(batch, restored):
        assert torch.allclose(restored(**batch).logits, expected, atol=1e-6)
    report = method.inference_report(tasks, model)
    assert report == again.inference_report(tasks, restored)  # slot ownership is part of the saved state
    assert report["routing_target"] == "slot"
    assert {name: r["expert"] for name, r in report["routing"].items()} == {tasks[0].name: 0, tasks[1].name: 1}
    for task in tasks:  # the report's numbers are the router's on the task's test prompts
        prompts = task.collate([task.encode_prompt(s) for s in task.test], padding_side="left")
        weights = method.routing_weights(prompts, model)
        own = report["routing"][task.name]
        assert own["samples"] == len(task.test)
        assert own["argmax"] == pytest.approx(100 * float((weights.argmax(1) == task.index).float().mean()))
        assert own["weight"] == pytest.approx(100 * float(weights[:, task.index].mean()), abs=1e-4)
