"""DISCO's server side in a federation: slot assignment, global identity tokens (paper Sec. 4.1; the
authors' code for the grouping). The aggregation itself is `citkit.federated.strategies.PerKeyFedAvg`:
each slot is averaged over the clients that trained it, weighted by their samples.

Per stage, with `assignment="grouped"` (the authors' code):
- round 0: each client matches its identity token to a slot (cosine to a global token > tau, else the
  first free slot; in the very first round no slot is filled, so every client trains slot 0);
- after round 0 the server groups that round's clients (pairwise cosine >= tau; a single client with
  under 0.1 % of the samples joins the nearest group) and aligns the groups to slots;
- later rounds: a client takes the slot of the group whose token is nearest to its own (above tau),
  else matches on its own. With `min_slot_samples` (not in the authors' code) a client holding fewer
  samples never opens a slot: it is grouped with its nearest group in the first round, and later it takes
  the nearest group's slot (the nearest filled slot without groups).
A client's token enters its slot's global token once per stage (a sample-weighted running mean).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from citkit.methods.disco.config import DiscoConfig
from citkit.methods.disco.method import Disco
from citkit.methods.disco.slots import (
    align_groups,
    cosines,
    group_clients,
    match_slot,
    merge_token,
    record_slot_samples,
    slot_samples_from_json,
    slot_samples_json,
)


def client_slot(config: DiscoConfig, token: Tensor, tokens: Tensor | None, counts: Tensor,
                info: dict[str, Any], samples: int = 0) -> int:
    """The slot a client holding `samples` samples trains this round, from its token and what the server sent."""
    if tokens is None:
        return 0
    if config.assignment == "grouped" and "disco.group_tokens" in info:
        scores = cosines(token[None], info["disco.group_tokens"])[0]  # (groups,)
        best = int(scores.argmax())
        if scores[best] >= config.threshold or samples < config.min_slot_samples:
            return int(info["disco.group_slots"][best])
    slot = match_slot(token, tokens, counts, config.threshold)
    if samples < config.min_slot_samples and counts[slot] == 0 and bool((counts > 0).any()):
        slot = match_slot(token, tokens, counts, -2.0)  # the nearest filled slot
    return slot


class DiscoCoordinator:
    """Global tokens per slot, and the stage's group -> slot table."""

    def __init__(self, method: Disco) -> None:
        self.config: DiscoConfig = method.config
        self.tokens: Tensor | None = None                  # (K, dim)
        self.counts = torch.zeros(self.config.num_subspaces)
        self.seen: set[tuple[int, int]] = set()             # (stage, client) whose token has been merged
        self.table: dict[int, tuple[Tensor, Tensor]] = {}   # stage -> (group tokens (G, dim), slots (G,))
        self.slot_samples: dict[int, dict[str, int]] = {}   # slot -> task -> samples trained (routing report)
        self.skip_ids: list[int] = []
        self._last: dict[str, int] = {}

    def round_config(self, stage: int, round_index: int) -> dict[str, Any]:
        return {"disco-assignment": self.config.assignment}

    def round_records(self, stage: int, round_index: int) -> dict[str, Tensor]:
        records: dict[str, Tensor] = {}
        if self.tokens is not None:
            records |= {"disco.tokens": self.tokens, "disco.counts": self.counts}
        if stage in self.table and round_index > 0:
            records |= {"disco.group_tokens": self.table[stage][0], "disco.group_slots": self.table[stage][1]}
        return records

    def observe(self, stage: int, round_index: int, reports: list[dict[str, Any]]) -> None:
        """After a round's aggregation: group and align (first round of a stage), merge new tokens."""
        reports = [r for r in reports if "token" in r]
        if not reports:
            return
        self._last = {str(r["client"]): int(r["slot"][0]) for r in reports}
        for report in reports:
            record_slot_samples(self.slot_samples, int(report["slot"][0]), report.get("tasks", {}))
        self.skip_ids = [int(i) for i in reports[0]["skip_ids"].tolist()]
        tokens = torch.stack([r["token"].float() for r in reports])  # (clients, dim)
        if self.tokens is None:
            self.tokens = torch.zeros(self.config.num_subspaces, tokens.shape[1])
        if self.config.assignment == "grouped" and round_index == 0:
            samples = [int(r["samples"]) for r in reports]
            groups = group_clients(tokens, samples, self.config.threshold, self.config.small_group_fraction,
                                   self.config.min_slot_samples)
            count = max(groups) + 1
            group_tokens = torch.stack([tokens[[i for i, g in enumerate(groups) if g == k]].mean(0)
                                        for k in range(count)])
            group_samples = [sum(s for s, g in zip(samples, groups, strict=True) if g == k) for k in range(count)]
            slots = align_groups(group_tokens, group_samples, self.tokens, self.counts, self.config.threshold)
            self.table[stage] = (group_tokens, torch.tensor(slots))
        for report, token in zip(reports, tokens, strict=True):
            key = (stage, int(report["client"]))
            if key in self.seen:
                continue
            self.seen.add(key)
            slot = int(report["slot"][0])
            self.tokens[slot], total = merge_token(self.tokens[slot], float(self.counts[slot]), token,
                                                   float(report["count"][0]))
            self.counts[slot] = total

    def last_assignment(self) -> dict[str, int]:
        """client -> slot of the last round (logged in rounds.json)."""
        return dict(self._last)

    def method_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """What the global model's Disco needs for inference: the tokens and the instruction-token filter."""
        tensors = {} if self.tokens is None else {"tokens": self.tokens, "counts": self.counts}
        return tensors, {"skip_ids": self.skip_ids, "slot_samples": slot_samples_json(self.slot_samples)}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, extra = self.method_state()
        tensors = dict(tensors)
        for stage, (group_tokens, slots) in self.table.items():
            tensors |= {f"table.{stage}.tokens": group_tokens, f"table.{stage}.slots": slots}
        return tensors, extra | {"seen": sorted(self.seen)}

    def load_state(self, state: tuple[dict[str, Tensor], dict[str, Any]]) -> None:
        tensors, extra = state
        self.tokens = tensors["tokens"].float() if "tokens" in tensors else None
        self.counts = tensors["counts"].float() if "counts" in tensors else torch.zeros(self.config.num_subspaces)
        stages = {int(k.split(".")[1]) for k in tensors if k.startswith("table.")}
        self.table = {s: (tensors[f"table.{s}.tokens"], tensors[f"table.{s}.slots"]) for s in stages}
        self.seen = {(int(a), int(b)) for a, b in extra.get("seen", [])}
        self.skip_ids = [int(i) for i in extra.get("skip_ids", [])]
        self.slot_samples = slot_samples_from_json(extra.get("slot_samples", {}))


Disco.federated_coordinator = DiscoCoordinator
