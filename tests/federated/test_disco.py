"""DISCO: slot matching, grouping and alignment, token merging, per-sample subspace activation, and
federated slot assignment end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from citkit.federated.federation import ClientWorker, Federation, full_state
from citkit.federated.runner import run
from citkit.io import load_tensors, read_json
from citkit.methods.disco.config import DiscoConfig
from citkit.methods.disco.layers import DiscoLinear
from citkit.methods.disco.slots import activation_weights, align_groups, group_clients, match_slot, merge_token

from .helpers import small_config

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
    known = torch.stack([E1, torch.zeros(2), torch.zeros(2)])
    assert align_groups(torch.stack([E0, E1]), [10, 5], known, torch.tensor([3.0, 0.0, 0.0]), 0.9) == [1, 0]


def test_token_merge_is_a_true_sample_weighted_mean() -> None:
    token, count = merge_token(torch.tensor([1.0, 0.0]), 2.0, torch.tensor([0.0, 1.0]), 1.0)
    assert torch.allclose(token, torch.tensor([2 / 3, 1 / 3])) and count == 3.0


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
                                     "setting": "heterogeneous", "schedule_file": str(schedule)})
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
