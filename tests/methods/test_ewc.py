"""EWC and EWC-TIR (citkit/methods/ewc.py) on the tiny model."""

from __future__ import annotations

import pytest
import torch

from citkit.errors import ConfigError
from citkit.io import load_tensors, read_json, save_tensors, write_json
from citkit.methods import METHODS
from citkit.methods.ewc import EWC, EWCConfig, EWCTIRConfig
from citkit.methods.task_similarity import TIRConfig

FAST = {"importance_max_samples": 8}  # keep the importance pass to 8 samples in tests


def lora_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="merge"):
        EWCConfig(merge="mean")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="penalty_weight"):
        EWCConfig(penalty_weight=-1.0)
    assert METHODS.get("ewc") is EWC and METHODS.get("ewc-tir").config_class().tir.enabled


def test_one_task_then_penalty(tiny_model, toy_tasks, train_one) -> None:
    method = EWC(EWCConfig(**FAST))
    model = method.attach(tiny_model)
    model, result = train_one(method, model, 0)
    assert result.final_loss["ewc"] == 0.0  # first task: nothing to protect
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(method.importance) == trained
    total = sum(v.sum().item() for v in method.importance.values())
    assert total == pytest.approx(1.0, rel=1e-4)  # normalised
    assert all(torch.all(o == 0) for o in method.owner.values())

    method.before_task(toy_tasks[1], model)
    batch = next(toy_tasks[1].batches(4))
    assert method.loss(batch, None, model)["ewc"].item() == 0.0  # theta == theta*
    with torch.no_grad():
        for p in lora_parameters(model):
            p.add_(1e-3)
    small = method.loss(batch, None, model)["ewc"].item()
    with torch.no_grad():
        for p in lora_parameters(model):
            p.add_(1e-3)
    large = method.loss(batch, None, model)["ewc"]
    assert small > 0 and large.item() == pytest.approx(4 * small, rel=1e-3)  # quadratic in the move
    assert large.requires_grad  # the engine backpropagates through it

    model, result = train_one(method, model, 1)
    assert result.final_loss["ewc"] > 0
    assert {int(o.max()) for o in method.owner.values()} == {1}  # task 1 owns some entries


def test_state_round_trip(tmp_path, tiny_model, toy_tasks, train_one) -> None:
    method = EWC(EWCConfig(**FAST))
    model, _ = train_one(method, method.attach(tiny_model), 0)
    save_tensors(tmp_path / "method.safetensors", method.state_dict())  # as the runner checkpoints
    write_json(tmp_path / "method.json", method.extra_state())

    restored = EWC(EWCConfig(**FAST))
    restored.load_state_dict(load_tensors(tmp_path / "method.safetensors"))
    restored.load_extra_state(read_json(tmp_path / "method.json"))
    assert set(restored.importance) == set(method.importance)
    for name in method.importance:
        torch.testing.assert_close(restored.importance[name], method.importance[name])
        assert torch.equal(restored.owner[name], method.owner[name])

    for m in (method, restored):
        m.before_task(toy_tasks[1], model)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.add_(1e-3)
    batch = next(toy_tasks[1].batches(4))
    expected = method.loss(batch, None, model)["ewc"].item()
    assert expected > 0 and restored.loss(batch, None, model)["ewc"].item() == pytest.approx(expected)


def test_tir_scales_importance_by_one_minus_owner_similarity(tiny_model, toy_tasks, train_one) -> None:
    method = METHODS.get("ewc-tir")(EWCTIRConfig(**FAST, tir=TIRConfig(enabled=True, max_samples=8)))
    model, _ = train_one(method, method.attach(tiny_model), 0)
    assert method.similarity.task_names == [toy_tasks[0].name]
    method.before_task(toy_tasks[1], model)
    # two tasks: one pair, similarity 0.5 per modality, 0.125 over three, so weights are 0.875 * importance
    assert method.extra_state()["tir"]["similarity"]["combined"][1][0] == pytest.approx(0.125)
    for name, importance in method.importance.items():
        torch.testing.assert_close(method.weights[name], importance * 0.875)

    model, _ = train_one(method, model, 1, steps=4)
    assert method.similarity.task_names == [t.name for t in toy_tasks[:2]]  # before_task added task 1 once
    method.before_task(toy_tasks[2], model)
    similarity = torch.tensor(method.extra_state()["tir"]["similarity"]["combined"][2][:2])
    assert similarity[0] != similarity[1]
    owners = torch.cat([o.flatten() for o in method.owner.values()])
    assert set(owners.tolist()) == {0, 1}
    for name, importance in method.importance.items():
        keep = (1 - similarity)[method.owner[name].long()]
        torch.testing.assert_close(method.weights[name], importance * keep)
    assert "tir.embedding.image" in method.state_dict()
