"""Splitting a unit's training samples over the clients that hold it.

Dirichlet(beta) quantity skew (FCIT, Sec. 5.1): client shares p ~ Dir(beta, ..., beta), sizes are p * n
rounded so that they sum to n. Smaller beta gives more unequal sizes. The FCIT authors' code passes
beta where the minimum client size belongs; citkit draws the shares from Dir(beta) as the paper says.
"""

from __future__ import annotations

import numpy as np

from citkit.data.samples import Sample
from citkit.errors import ConfigError


def dirichlet_sizes(total: int, clients: int, beta: float, rng: np.random.Generator,
                    allow_empty: bool = False) -> list[int]:
    """Sizes of `clients` shares of `total` items, shares ~ Dir(beta); they sum to `total`.

    Rounding keeps the largest remainders. Unless `allow_empty`, every client gets at least one item:
    an empty client takes one from the largest share (so the skew stays that of the draw)."""
    if clients < 1:
        raise ConfigError(f"cannot split {total} samples over {clients} clients")
    if not beta > 0:
        raise ConfigError(f"federated.beta must be > 0, got {beta}")
    if not allow_empty and total < clients:
        raise ConfigError(f"{total} samples cannot give each of {clients} clients one; lower federated.num_clients "
                          "or set federated.allow_empty_clients=true")
    shares = rng.dirichlet(np.full(clients, beta))
    raw = shares * total
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes), kind="stable")[: total - int(sizes.sum())]:
        sizes[i] += 1
    if not allow_empty:
        for i in np.flatnonzero(sizes == 0):
            sizes[int(np.argmax(sizes))] -= 1
            sizes[i] = 1
    return [int(s) for s in sizes]


def split_quantity(samples: list[Sample], clients: int, beta: float, rng: np.random.Generator,
                   allow_empty: bool = False) -> list[list[Sample]]:
    """A shuffled Dirichlet quantity split of `samples` into `clients` lists."""
    order = rng.permutation(len(samples))
    sizes = dirichlet_sizes(len(samples), clients, beta, rng, allow_empty)
    bounds = np.cumsum([0, *sizes])
    return [[samples[int(i)] for i in order[bounds[c]:bounds[c + 1]]] for c in range(clients)]


def split_answer_skew(samples: list[Sample], clients: int, beta: float, rng: np.random.Generator,
                      allow_empty: bool = False) -> list[list[Sample]]:
    """Each distinct answer's samples split with their own Dir(beta) shares (label skew); unless
    `allow_empty`, a client left without samples takes one from the largest client."""
    by_answer: dict[str, list[Sample]] = {}
    for sample in samples:
        by_answer.setdefault(answer_of(sample), []).append(sample)
    parts: list[list[Sample]] = [[] for _ in range(clients)]
    for answer in sorted(by_answer):
        group = by_answer[answer]
        for client, share in enumerate(split_quantity(group, clients, beta, rng, allow_empty=True)):
            parts[client] += share
    if not allow_empty:
        if len(samples) < clients:
            raise ConfigError(f"{len(samples)} samples cannot give each of {clients} clients one; lower "
                              "federated.num_clients or set federated.allow_empty_clients=true")
        for client in range(clients):
            if not parts[client]:
                donor = max(range(clients), key=lambda c: len(parts[c]))
                parts[client].append(parts[donor].pop())
    return parts


def answer_of(sample: Sample) -> str:
    """The reference answer of a sample: the last assistant turn (training) or `answer` (test)."""
    replies = [t.text for t in sample.turns if t.role == "assistant"]
    return replies[-1] if replies else (sample.answer or "")
