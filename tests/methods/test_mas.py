"""MAS and MAS-TIR (citkit/methods/mas.py) on the tiny model."""

from __future__ import annotations

import pytest
import torch

from citkit.errors import ConfigError
from citkit.io import load_tensors, save_tensors
from citkit.methods import METHODS
from citkit.methods._importance import fisher_diagonal
from citkit.methods.mas import MAS, MASConfig

FAST = {"importance_max_samples": 8}


def test_config() -> None:
    with pytest.raises(ConfigError, match="positions"):
        MASConfig(positions="prompt")  # type: ignore[arg-type]
    assert METHODS.get("mas") is MAS and METHODS.get("mas-tir").config_class().tir.enabled


def test_one_task_label_free_importance(tiny_model, toy_tasks, train_one) -> None:
    method = MAS(MASConfig(normalize=False, **FAST))
    model, result = train_one(method, method.attach(tiny_model), 0)
    assert result.final_loss["mas"] == 0.0  # first task: nothing to protect
    total = sum(v.sum().item() for v in method.importance.values())
    assert total > 0
    fisher = fisher_diagonal(model, toy_tasks[0].batches(1, limit=8))
    assert total != pytest.approx(sum(v.sum().item() for v in fisher.values()))  # not EWC's importance

    every = MAS(MASConfig(normalize=False, positions="all", **FAST)).compute_importance(toy_tasks[0], model)
    assert sum(v.sum().item() for v in every.values()) != pytest.approx(total)

    model, result = train_one(method, model, 1)
    assert result.final_loss["mas"] > 0


def test_state_round_trip(tmp_path, tiny_model, train_one) -> None:
    method = MAS(MASConfig(**FAST))
    train_one(method, method.attach(tiny_model), 0)
    save_tensors(tmp_path / "method.safetensors", method.state_dict())
    restored = MAS(MASConfig(**FAST))
    restored.load_state_dict(load_tensors(tmp_path / "method.safetensors"))
    for name, value in method.importance.items():
        torch.testing.assert_close(restored.importance[name], value)
        assert torch.equal(restored.owner[name], method.owner[name])
    assert restored.extra_state() == method.extra_state() == {}


def test_mas_tir_one_task(tiny_model, toy_tasks, train_one) -> None:
    cls = METHODS.get("mas-tir")
    method = cls(cls.config_class(**FAST))
    train_one(method, method.attach(tiny_model), 0)
    assert method.similarity.task_names == [toy_tasks[0].name]
    assert method.extra_state()["tir"]["similarity"]["combined"] == [[1.0]]
