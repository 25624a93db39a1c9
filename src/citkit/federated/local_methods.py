"""Which continual methods may run inside federated clients, and what a client sends back.

A local method runs unchanged inside each client (its hooks through `Engine.fit_task`); the rounds of a
stage are, for the method, repeated visits of the same task (same `task.index`). Methods that need the
data of earlier tasks (replay, joint) or the whole stream's similarity history (the TIR variants,
HiDe-LLaVA, EProj's per-task structure) are refused rather than silently changed.
"""

from __future__ import annotations

from torch import Tensor, nn

from citkit.errors import IncompatibleMethodError
from citkit.methods import METHODS
from citkit.methods.base import Method

FEDERATED_METHODS = ("lora-ft", "ewc", "mas", "lwf", "o-lora", "moelora", "disco")


def check_federated_method(name: str, strategy: str) -> None:
    """Refuse a method that cannot run inside clients, or DISCO with a server optimiser it lacks."""
    METHODS.get(name)
    if name not in FEDERATED_METHODS:
        raise IncompatibleMethodError(f"method {name!r} cannot run in federated clients; use one of "
                                      f"{', '.join(FEDERATED_METHODS)}")
    if name == "disco" and strategy != "fedavg":
        raise IncompatibleMethodError(f"disco aggregates each subspace over its own clients with FedAvg; "
                                      f"federated.strategy={strategy!r} is not supported with it, use fedavg")


def client_payload(method: Method, model: nn.Module) -> dict[str, Tensor]:
    """What a client sends: only what it can have changed. A method may define `client_payload(model)`
    (DISCO: its slot); otherwise the trainable parameters (an O-LoRA client: its current adapter, not the
    frozen ones)."""
    own = getattr(method, "client_payload", None)
    if own is not None:
        return own(model)
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def changeable_keys(method: Method, model: nn.Module) -> list[str]:
    """Parameter names a client of this stage may change (what the server strategy aggregates)."""
    own = getattr(method, "changeable_keys", None)
    if own is not None:
        return list(own(model))
    return [n for n, p in model.named_parameters() if p.requires_grad]
