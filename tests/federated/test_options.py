"""Each federation and DISCO option does what its help text says (cheap checks, little or no training)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from citkit.cli import build_parser
from citkit.engine.config import TrainConfig
from citkit.federated.config import FederatedConfig
from citkit.federated.federation import ClientWorker, Federation
from citkit.federated.partition import answer_of
from citkit.federated.rundir import FederatedRunDirectory
from citkit.federated.server import FederatedServer
from citkit.methods.disco import Disco
from citkit.methods.disco.config import DiscoConfig
from citkit.methods.disco.federated import client_slot
from citkit.methods.disco.layers import DiscoLinear
from citkit.methods.disco.slots import activation_weights

from .helpers import small_config


class Nodes:
    def __init__(self, count: int, first: int = 500) -> None:
        self.count, self.first = count, first

    def get_node_ids(self) -> list[int]:
        return list(range(self.first, self.first + self.count))


def test_split_covers_each_units_data_over_the_clients(tmp_path: Path) -> None:
    federation = Federation(small_config(tmp_path, federated={"num_clients": 4, "clients_per_round": 2}))
    for stage, task in enumerate(federation.tasks):
        parts = federation.client_samples(stage)
        assert len(parts) == 4 and min(map(len, parts)) >= 1
        assert sorted(s.id for p in parts for s in p) == sorted(s.id for s in task.train)


def test_capability_scenario_unites_a_groups_data(tmp_path: Path) -> None:
    federation = Federation(small_config(tmp_path, tasks=4, federated={"scenario": "capability"}))
    assert len(federation.schedule.units) == 2 and federation.num_stages == 2
    first = {s.task for p in federation.client_samples(0) for s in p}
    assert first == set(federation.schedule.units[0].tasks) and len(first) == 2


def test_answer_skew_and_empty_clients_and_sampling(tmp_path: Path) -> None:
    skewed = Federation(small_config(tmp_path, federated={"partition": "answer-skew", "beta": 0.05}))
    even = Federation(small_config(tmp_path, federated={"partition": "answer-skew", "beta": 100.0}))
    kinds = lambda f: sum(len({answer_of(s) for s in p}) for p in f.client_samples(0))  # noqa: E731
    assert kinds(skewed) < kinds(even)
    sparse = small_config(tmp_path, federated={"num_clients": 8, "clients_per_round": 8, "beta": 0.02,
                                               "allow_empty_clients": True})
    federation = Federation(sparse)
    sizes = [len(p) for p in federation.client_samples(0)]
    assert 0 in sizes
    server = FederatedServer(federation, ClientWorker(federation), FederatedRunDirectory(tmp_path / "unused"))
    sampled = server._sample(Nodes(8), 0, 0)
    assert sorted(sampled) == [500 + i for i, size in enumerate(sizes) if size > 0]  # empty clients never sampled
    big = Nodes(8, first=2**63 - 4)  # Flower's node ids are unsigned 64-bit; these straddle 2^63
    assert set(server._sample(big, 0, 0)) <= set(big.get_node_ids())
    assert not (tmp_path / "unused").exists()


def test_local_epochs_set_the_client_steps(tmp_path: Path) -> None:
    steps = []
    for epochs in (1.0, 2.0):
        federation = Federation(small_config(tmp_path, tasks=1, federated={"local_epochs": epochs}))
        worker = ClientWorker(federation)
        state = {k: v.clone() for k, v in worker.method.trainable_state(worker.prepare(0)).items()}
        first = worker.train(0, 0, 0, state, None, {})
        steps.append(first.steps)
    assert steps[1] == 2 * steps[0] > 0
    kept = {k: v.clone() for k, v in first.payload.items()}
    worker.train(1, 0, 0, state, None, {})  # the next client on the same model must not change what 0 sent
    assert all(torch.equal(first.payload[k], kept[k]) for k in kept)


def test_default_federation_sees_a_stage_as_often_as_a_central_run() -> None:
    """The help of rounds_per_stage: with the defaults a stage's data is seen R x sampled share x local
    epochs = 3 times, as a centralised run sees a task with its default train.epochs; the flags' help
    shows the same defaults."""
    fed = FederatedConfig()
    assert fed.rounds_per_stage == 10  # the FCIT paper's R
    assert fed.rounds_per_stage * fed.clients_per_round / fed.num_clients * fed.local_epochs == TrainConfig().epochs
    with pytest.raises(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:
        build_parser().parse_args(["fed", "run", "--help"])
    text = " ".join(out.getvalue().split())
    assert f"federated.rounds_per_stage (default {fed.rounds_per_stage})" in text
    assert f"federated.clients_per_round (default {fed.clients_per_round})" in text


def test_disco_structure_options(tmp_path: Path) -> None:
    federation = Federation(small_config(tmp_path, method="disco", method_options={
        "num_subspaces": 3, "target_modules": ["down_proj"], "feature_samples": 5}))
    worker = ClientWorker(federation)
    model = worker.build()
    layers = [m for m in model.modules() if isinstance(m, DiscoLinear)]
    names = [n for n, m in model.named_modules() if isinstance(m, DiscoLinear)]
    assert layers and all(len(layer.lora_A) == 3 for layer in layers) and all(n.endswith("down_proj") for n in names)
    token, count = worker.method.identity_token(federation.tasks[0], model)
    assert count == 5 and token.shape == (model.config.text_config.hidden_size,)
    small_batches = Disco(replace(worker.method.config, feature_batch_size=2), worker.method.adapter)
    assert torch.allclose(small_batches.identity_token(federation.tasks[0], model)[0], token, atol=1e-5)


def test_disco_assignment_and_activation_options() -> None:
    tokens, counts = torch.eye(3), torch.tensor([4.0, 4.0, 0.0])
    table = {"disco.group_tokens": torch.tensor([[0.0, 1.0, 0.0]]), "disco.group_slots": torch.tensor([1])}
    own = torch.tensor([0.1, 1.0, 0.0])
    assert client_slot(DiscoConfig(assignment="grouped"), own, tokens, counts, table) == 1
    # per-client: the group table is ignored; a token near no filled slot takes the free slot
    assert client_slot(DiscoConfig(assignment="per-client"), torch.tensor([0.0, 0.0, 1.0]), tokens, counts,
                       table) == 2
    assert client_slot(DiscoConfig(threshold=0.999), own, tokens, counts, {}) == 2  # cos 0.995 is not enough
    scores, filled = torch.tensor([[0.9, 0.8, 0.0]]), torch.tensor([True, True, False])
    sharp = activation_weights(scores, filled, "softmax", 0.01)[0, 0]
    soft = activation_weights(scores, filled, "softmax", 1.0)[0, 0]
    assert sharp > 0.99 and 0.5 < soft < 0.6
    assert activation_weights(scores, filled, "cosine", 0.05).tolist() == [[0.8999999761581421, 0.800000011920929, 0.0]]
