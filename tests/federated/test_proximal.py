"""FedProx's client-side proximal term: it has a gradient and it changes the client's update."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from citkit.federated.federation import ClientWorker, Federation, full_state
from citkit.federated.proximal import ProximalTerm, proximal_penalty
from citkit.methods.lora_ft import LoRAFineTuning

from .helpers import small_config


def test_proximal_term_has_the_gradient_mu_times_the_distance() -> None:
    model = nn.Linear(3, 2)
    anchor = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    term = ProximalTerm(LoRAFineTuning(), anchor, mu=0.5).loss({}, None, model)["proximal"]
    term.backward()
    assert torch.allclose(model.weight.grad, 0.5 * model.weight.detach())
    assert torch.allclose(model.bias.grad, 0.5 * model.bias.detach())
    # The anchor is a copy: changing the global tensors afterwards does not move it.
    detached = proximal_penalty(model, {k: v.detach() for k, v in model.named_parameters()})
    assert float(detached) == 0.0 and detached.requires_grad


def test_fedprox_pulls_the_client_update_towards_the_global_model(tmp_path: Path) -> None:
    fedprox = {"strategy": "fedprox", "strategy_options": {"proximal_mu": 1.0}}
    config = small_config(tmp_path, tasks=1, federated=fedprox, lr=0.05, max_steps=8)
    federation = Federation(config)
    worker = ClientWorker(federation)
    start = full_state(worker.method, worker.prepare(0))

    def distance(mu: float) -> float:
        result = worker.train(0, 0, 0, start, None, {}, proximal_mu=mu)
        return sum(float((result.payload[k] - start[k]).square().sum()) for k in result.payload)

    free, pulled = distance(0.0), distance(100.0)
    assert free > 0 and pulled < 0.5 * free
