"""FedProx's client-side proximal term (Li et al. 2020), as a wrapper around any local method.

    loss = method's loss + mu/2 * sum_w ||w - w_global||^2      over the parameters the client trains

The term is built from the live parameters (`named_parameters`), so it has a gradient mu (w - w_global).
A term computed from detached state-dict tensors would be a constant: its gradient is zero and FedProx
would silently equal FedAvg (tested).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from citkit.methods.base import Method


def proximal_penalty(model: nn.Module, anchor: dict[str, Tensor]) -> Tensor:
    """sum over trainable parameters with an anchor of ||w - anchor||^2, differentiable in w."""
    total: Tensor | None = None
    for name, param in model.named_parameters():
        if param.requires_grad and name in anchor:
            term = (param - anchor[name].to(param.device, param.dtype)).square().sum()
            total = term if total is None else total + term
    if total is None:
        raise ValueError("proximal term: no trainable parameter has a global value to stay close to")
    return total


class ProximalTerm(Method):
    """Delegates every hook to `inner` and adds 'proximal' = mu/2 * proximal_penalty to its loss."""

    def __init__(self, inner: Method, anchor: dict[str, Tensor], mu: float) -> None:
        self.inner = inner
        self.anchor = {k: v.detach().clone() for k, v in anchor.items()}
        self.mu = mu
        self.config, self.adapter = inner.config, inner.adapter
        self.trains = inner.trains

    def training_samples(self, task: Any, previous: list[Any]) -> list[Any]:
        return self.inner.training_samples(task, previous)

    def before_task(self, task: Any, model: nn.Module) -> None:
        self.inner.before_task(task, model)

    def objective(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        return self.inner.objective(batch, outputs, model)

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        terms = dict(self.inner.loss(batch, outputs, model))
        terms["proximal"] = 0.5 * self.mu * proximal_penalty(model, self.anchor)
        return terms

    def after_step(self, model: nn.Module) -> None:
        self.inner.after_step(model)

    def after_task(self, task: Any, model: nn.Module) -> None:
        self.inner.after_task(task, model)

    def route(self, batch: dict[str, Tensor], model: nn.Module) -> contextlib.AbstractContextManager[None]:
        return self.inner.route(batch, model)

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return self.inner.trainable_state(model)
