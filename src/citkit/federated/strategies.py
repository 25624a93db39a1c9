"""Server strategies by name: Flower's own (flwr.serverapp.strategy), and a per-key FedAvg for DISCO.

citkit samples each round's clients itself (seeded, among clients holding data in the stage) and hands
the strategy a grid showing only those (`grid.NodeSubset`), so every strategy is built with
`fraction_train=1.0`; server-side federated evaluation is off (the server scores the global model on the
test sets after each stage). A strategy is built afresh for each stage: the server optimisers' state
(FedAvgM momentum, FedAdam moments) lives within a stage, where the set of trainable tensors is fixed (a
new O-LoRA adapter changes it), and a run resumed at a stage boundary is then exact. Inside a stage, that
state is saved with every round checkpoint (`strategy_state`) so a run resumed at a round is exact too.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Strategy,
)
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from citkit.errors import ConfigError
from citkit.registry import Registry

STRATEGIES: Registry[type[Strategy]] = Registry("federated strategy")
for _name, _cls in (("fedavg", FedAvg), ("fedavgm", FedAvgM), ("fedadam", FedAdam), ("fedadagrad", FedAdagrad),
                    ("fedyogi", FedYogi), ("fedprox", FedProx), ("fedmedian", FedMedian),
                    ("fedtrimmedavg", FedTrimmedAvg)):
    STRATEGIES.register(_name)(_cls)

# Set by citkit, not by the user: sampling and evaluation are the server loop's.
_FIXED = {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": 1, "min_evaluate_nodes": 0,
          "min_available_nodes": 1}
_PLUMBING = {"weighted_by_key", "arrayrecord_key", "configrecord_key", "train_metrics_aggr_fn",
             "evaluate_metrics_aggr_fn"}


def strategy_options(cls: type[Strategy]) -> dict[str, Any]:
    """The options a user may set on a strategy class, with their defaults."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if name not in _FIXED and name not in _PLUMBING and name != "self"}


def check_strategy_options(cls: type[Strategy], name: str, options: dict[str, Any]) -> None:
    known = strategy_options(cls)
    for key, value in options.items():
        if key not in known:
            raise ConfigError(f"federated.strategy_options.{key}: {name} has no such option; it has "
                              f"{', '.join(known) or 'none'}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"federated.strategy_options.{key}={value!r}: expected a number")
    if name == "fedprox" and float(options.get("proximal_mu", 0.0)) < 0:
        raise ConfigError(f"federated.strategy_options.proximal_mu must be >= 0, got {options['proximal_mu']}")


def build_strategy(name: str, options: dict[str, Any], per_key: bool = False) -> Strategy:
    """A fresh strategy `name` with `options`; `per_key` gives DISCO's subspace-wise FedAvg instead."""
    cls = STRATEGIES.get(name)
    check_strategy_options(cls, name, options)
    if per_key:
        if name != "fedavg":
            raise ConfigError(f"per-subspace aggregation is FedAvg only, not {name!r}")
        return PerKeyFedAvg(**_FIXED)
    return cls(**_FIXED, **options)


# What Flower's server optimisers carry from one round to the next: FedAvgM the previous global arrays and
# the momentum, FedAdam/FedYogi/FedAdagrad the moments (and the arrays sent, reset by every configure_train).
_STATE_ATTRIBUTES = ("current_arrays", "momentum_vector", "m_t", "v_t")


def strategy_state(strategy: Strategy) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A strategy's state between rounds as tensors (`attribute/key`) and how to rebuild each attribute."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    for name in _STATE_ATTRIBUTES:
        value = getattr(strategy, name, None)
        if value is None:
            continue
        if isinstance(value, ArrayRecord):
            kind, items = "record", {k: a.numpy() for k, a in value.items()}
        elif isinstance(value, dict):
            kind, items = "dict", value
        else:  # FedAvgM's momentum: a list in the arrays' order
            kind, items = "list", {str(i): v for i, v in enumerate(value)}
        tensors |= {f"{name}/{k}": torch.from_numpy(np.array(v, copy=True)) for k, v in items.items()}
        layout[name] = {"kind": kind, "keys": list(items)}
    return tensors, layout


def load_strategy_state(strategy: Strategy, state: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> None:
    """Put back what `strategy_state` saved, bit for bit."""
    tensors, layout = state
    for name, entry in layout.items():
        items = {k: tensors[f"{name}/{k}"].numpy() for k in entry["keys"]}
        if entry["kind"] == "record":
            setattr(strategy, name, ArrayRecord({k: Array(v) for k, v in items.items()}))
        elif entry["kind"] == "dict":
            setattr(strategy, name, items)
        else:
            setattr(strategy, name, list(items.values()))


class PerKeyFedAvg(FedAvg):
    """FedAvg in which each tensor is averaged over the clients that sent it, weighted by their samples.

    Flower's FedAvg expects every reply to hold one ArrayRecord with the same keys. A DISCO client sends
    only the subspace (slot) it trained, so slot k is averaged over the clients assigned to it, other
    slots are left as they were, and a shared part (the projector) is averaged over everyone."""

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        weights = [float(next(iter(c.metric_records.values()))[self.weighted_by_key]) for c in contents]
        sums: dict[str, np.ndarray] = {}
        totals: dict[str, float] = {}
        for content, weight in zip(contents, weights, strict=True):
            for key, array in content[self.arrayrecord_key].items():
                value = array.numpy().astype(np.float64) * weight
                sums[key] = sums[key] + value if key in sums else value
                totals[key] = totals.get(key, 0.0) + weight
        arrays = ArrayRecord({k: Array((v / max(totals[k], 1e-12)).astype(np.float32)) for k, v in sums.items()})
        return arrays, aggregate_metricrecords(contents, self.weighted_by_key)
