"""train.projector_lr / projector_lr_scale reach the projector in every method that trains it, and only it."""

from __future__ import annotations

import logging

import pytest
import torch

from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine, projector_parameters
from citkit.errors import ConfigError
from citkit.methods import METHODS
from citkit.models.lora import AdapterConfig

TRAINING = [name for name in METHODS.names() if METHODS.get(name).trains]


def moved_after_one_task(name: str, model: torch.nn.Module, tasks, **rates) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(largest change of a projector parameter, largest change of any other trained parameter)."""
    torch.manual_seed(0)
    method = METHODS.get(name)(adapter=AdapterConfig(dropout=0.0, train_projector=True))
    engine = Engine(TrainConfig(progress=False, max_steps=1, batch_size=4, warmup_ratio=0.0, **rates), cpu=True)
    model = engine.attach(method, model)
    before: dict[str, torch.Tensor] = {}
    add_task_structure = method.before_task

    def snapshot_after_before_task(task, model):  # type: ignore[no-untyped-def]
        add_task_structure(task, model)  # EProj adds the task's projector copy here
        before.update({n: p.detach().clone() for n, p in model.named_parameters()})

    method.before_task = snapshot_after_before_task  # type: ignore[method-assign]
    engine.fit_task(model, method, tasks[0], [], seed=0)
    projector = {id(p) for p in projector_parameters(model)}
    in_projector, elsewhere = 0.0, 0.0
    for n, p in model.named_parameters():
        if n not in before:
            continue
        change = float((p.detach() - before[n]).abs().max())
        if id(p) in projector:
            in_projector = max(in_projector, change)
        else:
            elsewhere = max(elsewhere, change)
    return in_projector, elsewhere


@pytest.mark.parametrize("name", TRAINING)
def test_projector_rate_applies_in_every_method(name: str, tiny_model, toy_tasks) -> None:  # type: ignore[no-untyped-def]
    import copy

    plain = moved_after_one_task(name, copy.deepcopy(tiny_model), toy_tasks)
    rate = {"projector_lr_scale": 1e-9} if name == "hide-llava" else {"projector_lr": 1e-12}  # the authors' form
    slow = moved_after_one_task(name, copy.deepcopy(tiny_model), toy_tasks, **rate)
    assert plain[0] > 1e-5, f"{name} does not train the projector with adapter.train_projector=true"
    assert slow[0] < 1e-9  # the projector moves at its own (tiny) rate ...
    assert slow[1] == pytest.approx(plain[1], rel=1e-3, abs=1e-7)  # ... and nothing else changes its rate


def test_a_projector_rate_without_a_trained_projector_is_warned_about(tiny_model, toy_tasks,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    method = METHODS.get("lora-ft")(adapter=AdapterConfig(train_projector=False))
    engine = Engine(TrainConfig(progress=False, max_steps=1, batch_size=4, projector_lr=1e-5), cpu=True)
    model = engine.attach(method, tiny_model)
    with caplog.at_level(logging.WARNING):
        engine.fit_task(model, method, toy_tasks[0], [], seed=0)
    assert "projector does not train here" in caplog.text


def test_projector_rate_settings_are_validated() -> None:
    assert TrainConfig(lr=2e-4, projector_lr_scale=0.1).projector_rate == pytest.approx(2e-5)
    assert TrainConfig(projector_lr=3e-5).projector_rate == 3e-5 and TrainConfig().projector_rate is None
    with pytest.raises(ConfigError, match="both set"):
        TrainConfig(projector_lr=1e-5, projector_lr_scale=0.1)
    with pytest.raises(ConfigError, match="projector_lr_scale must be > 0"):
        TrainConfig(projector_lr_scale=0.0)
