"""DISCO's slot logic as pure functions: matching identity tokens to slots, grouping clients, merging
tokens, and the inference-time weights (paper Sec. 4; the authors' code where it is more specific)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosines(a: Tensor, b: Tensor) -> Tensor:
    """(n, m) cosine similarity of rows of a (n, dim) with rows of b (m, dim)."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def match_slot(token: Tensor, tokens: Tensor, counts: Tensor, threshold: float) -> int:
    """The slot for a token: the filled slot of highest cosine if it is above `threshold`, else the first
    free slot, else (all filled) the nearest slot."""
    filled = counts > 0
    if filled.any():
        scores = cosines(token[None], tokens)[0].masked_fill(~filled, -2.0)  # (K,)
        best = int(scores.argmax())
        if scores[best] > threshold or filled.all():
            return best
    return int((~filled).nonzero()[0])


def group_clients(tokens: Tensor, samples: list[int], threshold: float, small_fraction: float,
                  min_samples: int = 0) -> list[int]:
    """Group id per client: connected components of the graph 'cosine >= threshold'; a single-client group
    with under `small_fraction` of the samples (authors' code) or under `min_samples` samples joins the group
    nearest to it."""
    n = tokens.shape[0]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    similar = cosines(tokens, tokens) >= threshold  # (n, n)
    for i in range(n):
        for j in range(i + 1, n):
            if similar[i, j]:
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(n)]
    total = max(1, sum(samples))
    for i in range(n):
        alone = roots.count(roots[i]) == 1
        small = samples[i] < small_fraction * total or samples[i] < min_samples
        if alone and small and len(set(roots)) > 1:
            others = [j for j in range(n) if roots[j] != roots[i]]
            scores = cosines(tokens[i:i + 1], tokens[others])[0]
            roots[i] = roots[others[int(scores.argmax())]]
    order = {r: g for g, r in enumerate(dict.fromkeys(roots))}
    return [order[r] for r in roots]


def align_groups(group_tokens: Tensor, group_samples: list[int], tokens: Tensor, counts: Tensor,
                 threshold: float) -> list[int]:
    """Slot per group, largest group first: a filled slot not yet taken whose token is above `threshold`,
    else the first free slot, else the nearest slot (shared)."""
    slots = [-1] * group_tokens.shape[0]
    taken: set[int] = set()
    filled = counts > 0
    for g in sorted(range(len(slots)), key=lambda g: -group_samples[g]):
        scores = cosines(group_tokens[g:g + 1], tokens)[0].masked_fill(~filled, -2.0)
        for slot in taken:
            scores[slot] = -2.0
        free = [k for k in range(tokens.shape[0]) if not filled[k] and k not in taken]
        if filled.any() and scores.max() > threshold:
            slots[g] = int(scores.argmax())
        elif free:
            slots[g] = free[0]
        else:
            slots[g] = int(cosines(group_tokens[g:g + 1], tokens)[0].argmax())
        taken.add(slots[g])
    return slots


def merge_token(token: Tensor, count: float, new: Tensor, new_count: float) -> tuple[Tensor, float]:
    """Sample-weighted running mean: (token * n + new * m) / (n + m). The authors' code has a misplaced
    parenthesis in one branch (token * n + sum / (n + m)); this is the true mean."""
    total = count + new_count
    return (token * count + new * new_count) / total, total


def activation_weights(scores: Tensor, filled: Tensor, kind: str, temperature: float) -> Tensor:
    """(batch, K) weights of the subspaces from cosines `scores` (batch, K); unfilled slots get 0."""
    masked = scores.masked_fill(~filled, float("-inf"))
    if kind == "softmax":
        return torch.softmax(masked / temperature, dim=-1)
    if kind == "argmax":
        return F.one_hot(masked.argmax(-1), scores.shape[-1]).to(scores.dtype)
    if kind == "cosine":
        return scores.masked_fill(~filled, 0.0)
    if kind == "sum":
        return filled.to(scores.dtype).expand_as(scores).clone()
    raise ValueError(f"unknown activation {kind!r}")


def record_slot_samples(table: dict[int, dict[str, int]], slot: int, samples: dict[str, int]) -> None:
    """Add `samples` (task -> count) to what `slot` has trained on (the routing report's ground truth)."""
    held = table.setdefault(slot, {})
    for task, count in samples.items():
        held[task] = held.get(task, 0) + int(count)


def own_slots(table: dict[int, dict[str, int]]) -> dict[str, int]:
    """task -> the slot that trained on most of its samples (the lower slot on a tie)."""
    best: dict[str, tuple[int, int]] = {}
    for slot in sorted(table):
        for task, count in table[slot].items():
            if task not in best or count > best[task][1]:
                best[task] = (slot, count)
    return {task: slot for task, (slot, _) in best.items()}


def slot_samples_json(table: dict[int, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {str(slot): dict(tasks) for slot, tasks in sorted(table.items())}


def slot_samples_from_json(data: dict[str, dict[str, int]]) -> dict[int, dict[str, int]]:
    return {int(slot): {task: int(n) for task, n in tasks.items()} for slot, tasks in data.items()}
