"""Server strategies by name, their options, and DISCO's per-key averaging."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

from citkit.errors import ConfigError, UnknownNameError
from citkit.federated.config import FederatedConfig
from citkit.federated.grid import InProcessGrid, server_identity
from citkit.federated.strategies import PerKeyFedAvg, build_strategy, load_strategy_state, strategy_state


def test_strategies_are_flowers_own() -> None:
    assert type(build_strategy("fedavg", {})) is FedAvg
    assert build_strategy("fedprox", {"proximal_mu": 0.1}).proximal_mu == 0.1
    adam = build_strategy("fedadam", {"eta": 0.01})
    assert isinstance(adam, FedAdam) and adam.eta == 0.01
    assert isinstance(build_strategy("fedprox", {}), FedProx)


def test_bad_strategy_settings_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'fedavg'"):
        FederatedConfig(strategy="fedavgg")
    with pytest.raises(ConfigError, match="no such option"):
        FederatedConfig(strategy="fedavg", strategy_options={"proximal_mu": 0.1})
    with pytest.raises(ConfigError, match="proximal_mu must be >= 0"):
        FederatedConfig(strategy="fedprox", strategy_options={"proximal_mu": -1.0})
    with pytest.raises(ConfigError, match="clients_per_round=5 must be between 1 and federated.num_clients=3"):
        FederatedConfig(num_clients=3, clients_per_round=5)
    with pytest.raises(ConfigError, match="beta must be > 0"):
        FederatedConfig(beta=0.0)


def reply(arrays: dict[str, list[float]], samples: int) -> Message:
    with server_identity(1):
        return _reply(arrays, samples)


def _reply(arrays: dict[str, list[float]], samples: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.array(v, dtype=np.float32)) for k, v in arrays.items()}),
                          "metrics": MetricRecord({"num-examples": samples})})
    return Message(content, dst_node_id=1, message_type="train")


def test_per_key_average_touches_only_what_was_sent() -> None:
    replies = [reply({"slot0": [1.0, 1.0], "shared": [0.0]}, 1), reply({"slot0": [4.0, 4.0], "shared": [3.0]}, 2),
               reply({"slot1": [9.0, 9.0], "shared": [6.0]}, 3)]
    arrays, metrics = PerKeyFedAvg().aggregate_train(1, replies)
    out = {k: v.numpy() for k, v in arrays.items()}
    assert np.allclose(out["slot0"], [3.0, 3.0])        # (1*1 + 2*4) / 3: only the two clients of slot 0
    assert np.allclose(out["slot1"], [9.0, 9.0])        # one client
    assert np.allclose(out["shared"], [(0 + 6 + 18) / 6])  # everyone, weighted by samples
    assert metrics is not None


@pytest.mark.parametrize("name, options", [("fedavgm", {"server_momentum": 0.9}), ("fedadam", {"eta": 0.1}),
                                           ("fedyogi", {}), ("fedadagrad", {}), ("fedavg", {})])
def test_a_server_optimiser_state_saved_after_a_round_continues_bit_for_bit(name: str, options: dict) -> None:
    grid = InProcessGrid(lambda message, context: message, num_nodes=2)
    rng = np.random.default_rng(0)
    updates = [{"w": rng.normal(size=3).tolist(), "b": [float(rng.normal())]} for _ in range(6)]

    def one_round(strategy, server_round: int, current: ArrayRecord) -> ArrayRecord:  # type: ignore[no-untyped-def]
        with server_identity(grid.run.run_id):
            list(strategy.configure_train(server_round, current, ConfigRecord(), grid))
            replies = [reply(updates[2 * server_round - 2 + i], 1 + i) for i in range(2)]
            arrays, _ = strategy.aggregate_train(server_round, replies)
        return arrays

    start = ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32)), "b": Array(np.zeros(1, dtype=np.float32))})
    whole = build_strategy(name, options)
    after_two = one_round(whole, 2, one_round(whole, 1, start))
    saved = strategy_state(whole)
    resumed = build_strategy(name, options)
    load_strategy_state(resumed, (dict(saved[0]), saved[1]))
    last, again = one_round(whole, 3, after_two), one_round(resumed, 3, after_two)
    assert all(np.array_equal(last[k].numpy(), again[k].numpy()) for k in ("w", "b"))
    if name != "fedavg":  # a stateful optimiser: a fresh strategy would not give the same third round
        fresh = one_round(build_strategy(name, options), 3, after_two)
        assert not all(np.array_equal(last[k].numpy(), fresh[k].numpy()) for k in ("w", "b"))
