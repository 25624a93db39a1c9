"""DISCO's options (Guo et al., "Federated continual instruction tuning", ICCV 2025; docs/federated.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from citkit.errors import ConfigError

Activation = Literal["softmax", "argmax", "cosine", "sum"]
Assignment = Literal["grouped", "per-client"]


@dataclass(frozen=True)
class DiscoConfig:
    """Subspaces, identity-token matching and the inference-time activation."""

    num_subspaces: int = field(default=8, metadata={"help": (
        "K: LoRA subspaces (A_k, B_k) preallocated in every adapted layer, each of rank adapter.rank; slots "
        "fill as new tasks are recognised, and once all are used the nearest is shared (paper: 8 for the "
        "task-related, 4 for the capability-related scenario, rank 8 each).")})
    target_modules: tuple[str, ...] = field(default=("gate_proj", "up_proj", "down_proj"), metadata={"help": (
        "Linear layers of the language model that get subspaces; replaces adapter.target_modules (the "
        "authors' FCIT code adapts the FFN only: gate, up, down).")})
    threshold: float = field(default=0.9, metadata={"help": (
        "tau: a client's identity token joins a slot whose global token has cosine > tau, and clients with "
        "pairwise cosine >= tau form one group (paper: 0.9).")})
    temperature: float = field(default=0.05, metadata={"help": (
        "T in alpha = softmax(s / T) over the cosines s of a test instruction to the slots' tokens (paper: "
        "0.05).")})
    activation: Activation = field(default="softmax", metadata={"help": (
        "How subspaces are mixed at inference: 'softmax' (the paper's), 'argmax' (the nearest slot only), "
        "'cosine' (raw cosine weights) or 'sum' (every filled slot with weight 1); the paper's ablation.")})
    assignment: Assignment = field(default="grouped", metadata={"help": (
        "'grouped' (the authors' code): in a stage's first round each client picks its slot, then the server "
        "groups that round's clients by pairwise cosine and aligns groups to slots, and the stage's later "
        "rounds reuse that. 'per-client': every round each client takes the slot whose global token is "
        "nearest above tau, else the first free one.")})
    small_group_fraction: float = field(default=0.001, metadata={"help": (
        "A single-client group holding under this fraction of the round's samples joins the nearest "
        "group (authors' code: 0.1%).")})
    min_slot_samples: int = field(default=0, metadata={"help": (
        "A client holding fewer samples than this never opens a slot of its own: alone in a stage's first-round "
        "grouping it joins the nearest group (as the small_group_fraction rule), and where it matches no group "
        "or slot above tau it takes the nearest group's slot (the nearest filled slot without groups). 0 (the "
        "authors' code): any client may open a slot, and one holding a handful of samples then takes test "
        "samples' routing with a subspace trained on them (docs/federated.md).")})
    feature_samples: int | None = field(default=None, metadata={"help": (
        "Samples of a client's (or task's) data averaged into its identity token (default: all).")})
    feature_batch_size: int = field(default=32, metadata={"help": "Batch size of the identity-token pass."})

    def __post_init__(self) -> None:
        if self.num_subspaces < 1:
            raise ConfigError(f"disco num_subspaces must be >= 1, got {self.num_subspaces}")
        if not self.target_modules:
            raise ConfigError("disco target_modules is empty; name at least one linear layer, e.g. up_proj")
        if not -1 <= self.threshold <= 1:
            raise ConfigError(f"disco threshold is a cosine, in [-1, 1]; got {self.threshold}")
        if self.temperature <= 0:
            raise ConfigError(f"disco temperature must be > 0, got {self.temperature}")
        if self.activation not in ("softmax", "argmax", "cosine", "sum"):
            raise ConfigError(f"disco activation {self.activation!r}: use softmax, argmax, cosine or sum")
        if self.assignment not in ("grouped", "per-client"):
            raise ConfigError(f"disco assignment {self.assignment!r}: use 'grouped' or 'per-client'")
        if not 0 <= self.small_group_fraction < 1:
            raise ConfigError(f"disco small_group_fraction must be in [0, 1), got {self.small_group_fraction}")
        if self.min_slot_samples < 0:
            raise ConfigError(f"disco min_slot_samples must be >= 0, got {self.min_slot_samples}")
        if self.feature_samples is not None and self.feature_samples < 1:
            raise ConfigError(f"disco feature_samples must be >= 1 or unset, got {self.feature_samples}")
        if self.feature_batch_size < 1:
            raise ConfigError(f"disco feature_batch_size must be >= 1, got {self.feature_batch_size}")
