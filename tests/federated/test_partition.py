"""Dirichlet and answer-skew splits of a unit's samples over clients."""

from __future__ import annotations

import numpy as np
import pytest

from citkit.data.samples import Sample, Turn
from citkit.errors import ConfigError
from citkit.federated.partition import answer_of, dirichlet_sizes, split_answer_skew, split_quantity


def samples(n: int, answers: int = 4) -> list[Sample]:
    return [Sample(str(i), (), (Turn("user", "q"), Turn("assistant", f"a{i % answers}"))) for i in range(n)]


@pytest.mark.parametrize("total,clients,beta", [(100, 10, 1.0), (7, 7, 0.5), (1000, 3, 5.0), (50, 10, 0.1)])
def test_dirichlet_sizes_sum_to_the_data_and_leave_nobody_empty(total: int, clients: int, beta: float) -> None:
    sizes = dirichlet_sizes(total, clients, beta, np.random.default_rng(0))
    assert sum(sizes) == total and len(sizes) == clients
    assert min(sizes) >= 1


def test_small_beta_skews_the_sizes() -> None:
    def largest_share(beta: float) -> float:
        rng = np.random.default_rng(1)
        return float(np.mean([max(dirichlet_sizes(1000, 10, beta, rng)) / 1000 for _ in range(200)]))

    skewed, even = largest_share(0.1), largest_share(100.0)
    assert skewed > 0.5 > 0.15 > even  # one client holds most of the data at beta 0.1; ~1/10 each at 100


def test_same_seed_same_split_other_seed_other_split() -> None:
    data = samples(200)
    first = split_quantity(data, 5, 0.5, np.random.default_rng(3))
    again = split_quantity(data, 5, 0.5, np.random.default_rng(3))
    other = split_quantity(data, 5, 0.5, np.random.default_rng(4))
    ids = lambda parts: [[s.id for s in p] for p in parts]  # noqa: E731
    assert ids(first) == ids(again) and ids(first) != ids(other)
    assert sorted(s.id for p in first for s in p) == sorted(s.id for s in data)  # a partition: each sample once


def test_empty_clients_only_when_allowed() -> None:
    with pytest.raises(ConfigError, match="allow_empty_clients"):
        dirichlet_sizes(3, 5, 1.0, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    empties = sum(dirichlet_sizes(20, 10, 0.05, rng, allow_empty=True).count(0) for _ in range(20))
    assert empties > 0


def test_answer_skew_separates_answers_across_clients() -> None:
    data = samples(400, answers=4)

    def answers_per_client(beta: float) -> float:
        parts = split_answer_skew(data, 4, beta, np.random.default_rng(5))
        return float(np.mean([len({answer_of(s) for s in p if True}) for p in parts]))

    assert answers_per_client(0.05) < answers_per_client(100.0) == 4.0
    parts = split_answer_skew(data, 4, 0.05, np.random.default_rng(5))
    assert sum(len(p) for p in parts) == 400 and min(len(p) for p in parts) >= 1
