"""Each CIL method: what its hooks promise, on the small stream and a random tiny ViT."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from citkit.cil.backbone import build_classifier, lora_layers
from citkit.cil.methods import CIL_METHODS
from citkit.cil.methods.base import AlignmentConfig, alignment_phase, extract_features
from citkit.cil.methods.inflora import grow_basis, project_out, top_directions
from citkit.cil.runner import _grow_head, build_method, run_cil, run_phase
from citkit.cil.stats import ClassGaussians
from citkit.cil.stream import build_stream
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine


def prepared(config):
    """Model, method, tasks and engine as the runner builds them (for hook-level checks)."""
    method = build_method(config)
    model, transform = build_classifier(config.model, method.classifier)
    tasks = build_stream(config.data, transform).tasks
    engine = Engine(config.train, cpu=True)
    torch.manual_seed(0)
    return engine.attach(method, model), method, tasks, engine


def fit(engine, model, method, task, previous=(), seed=0):
    _grow_head(model, task, 0)
    engine.fit_task(model, method, task, list(previous), seed=seed)
    for phase in method.phases(task, model):
        run_phase(engine, model, phase, seed)


@pytest.mark.parametrize("name", CIL_METHODS.names())
def test_every_method_runs_the_small_stream(config_for, name: str) -> None:
    result = run_cil(config_for(name))
    assert len(result.stages) == 3 and all(0 <= s.pooled <= 100 for s in result.stages)


def test_lora_ft_masks_old_class_logits(config_for) -> None:
    model, method, tasks, engine = prepared(config_for("lora-ft"))
    fit(engine, model, method, tasks[0])
    old = model.head.parts[0].weight.detach().clone()
    fit(engine, model, method, tasks[1], tasks[:1], seed=1)
    assert torch.equal(model.head.parts[0].weight, old)  # old classes' rows get no gradient


def test_joint_trains_on_every_task_so_far_without_masking(config_for) -> None:
    model, method, tasks, engine = prepared(config_for("joint"))
    assert method.training_samples(tasks[2], tasks[:2]) == tasks[0].train + tasks[1].train + tasks[2].train
    fit(engine, model, method, tasks[0])
    old = model.head.parts[0].weight.detach().clone()
    fit(engine, model, method, tasks[1], tasks[:1], seed=1)
    assert not torch.equal(model.head.parts[0].weight, old)


def test_simplecil_head_holds_the_class_means_of_the_frozen_backbone(config_for) -> None:
    model, method, tasks, engine = prepared(config_for("simplecil"))
    assert not any(p.requires_grad for p in model.parameters()) and model.head.kind == "cosine"
    _grow_head(model, tasks[0], 0)
    method.after_task(tasks[0], model)
    features, labels = extract_features(model, tasks[0])
    torch.testing.assert_close(model.head.parts[0].weight[1], features[labels == 1].mean(0))


@pytest.mark.parametrize("name,term", [("ewc", "ewc"), ("lwf", "lwf"), ("o-lora", "orthogonality")])
def test_regularisers_add_nothing_on_the_first_task_and_something_after(config_for, name: str, term: str) -> None:
    model, method, tasks, engine = prepared(config_for(name))
    _grow_head(model, tasks[0], 0)
    method.before_task(tasks[0], model)
    batch = next(tasks[0].batches(4))
    assert float(method.loss(batch, model(**batch), model)[term].detach()) == 0.0
    model.train()
    engine.fit_task(model, method, tasks[0], seed=0)
    _grow_head(model, tasks[1], 0)
    method.before_task(tasks[1], model)
    with torch.no_grad():  # move the trainable weights so a pull-back or a disagreement appears
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    batch = next(tasks[1].batches(4))
    assert float(method.loss(batch, model(**batch), model)[term].detach()) > 0.0


def test_inflora_designs_a_orthogonal_to_the_stored_old_input_subspace(config_for) -> None:
    model, method, tasks, engine = prepared(config_for("inflora", threshold=0.9))
    fit(engine, model, method, tasks[0])
    assert method.bases and all(b.shape[1] > 0 for b in method.bases.values())
    _grow_head(model, tasks[1], 0)
    method.before_task(tasks[1], model)
    for name, layer in lora_layers(model):
        a = layer.lora_A["task_1"].weight.double()  # (rank, in)
        assert not layer.lora_A["task_1"].weight.requires_grad and layer.lora_B["task_1"].weight.requires_grad
        assert float((a @ method.bases[name]).abs().max()) < 1e-5, name
        assert torch.allclose(a @ a.T, torch.eye(a.shape[0], dtype=a.dtype), atol=1e-5)


def test_inflora_basis_grows_to_the_energy_threshold() -> None:
    covariance = torch.diag(torch.tensor([8.0, 1.0, 0.5, 0.5], dtype=torch.float64))
    basis = grow_basis(covariance, None, 0.8)  # 8/10 is enough
    assert basis.shape == (4, 1) and abs(float(basis[0, 0])) == 1.0
    assert grow_basis(covariance, None, 0.85).shape[1] == 2
    direction = top_directions(project_out(covariance, basis), 1)
    assert abs(float(direction[0, 1])) == pytest.approx(1.0)


def test_sd_lora_freezes_old_directions_and_trains_their_magnitudes(config_for) -> None:
    model, method, tasks, engine = prepared(config_for("sd-lora"))
    _grow_head(model, tasks[0], 0)
    engine.fit_task(model, method, tasks[0], seed=0)  # after_task decouples task_0
    layer = lora_layers(model)[0][1]
    b = layer.lora_B["task_0"]
    assert torch.nn.utils.parametrize.is_parametrized(b, "weight")
    magnitude = float(b.parametrizations.weight[0].magnitude.detach())
    effective = (layer.scaling["task_0"] * b.weight @ layer.lora_A["task_0"].weight).detach()
    assert float(effective.norm()) == pytest.approx(magnitude, rel=1e-5)  # decoupling leaves the update as it was
    _grow_head(model, tasks[1], 0)
    direction = b.parametrizations.weight.original.detach().clone()
    engine.fit_task(model, method, tasks[1], tasks[:1], seed=1)
    assert torch.equal(b.parametrizations.weight.original, direction)
    assert float(b.parametrizations.weight[0].magnitude.detach()) != magnitude


def test_refinement_lowers_the_heads_bias_toward_new_classes(random_vit, config_for) -> None:
    """Two old classes and one new; the head starts biased: the new class also fires on old-class features."""
    model, *_ = prepared(config_for("slca"))
    model.head.add_classes(2)
    model.head.add_classes(1)
    hidden = model.head.hidden
    gaussians = ClassGaussians()
    means = torch.zeros(3, hidden)
    means[0, 0], means[1, 1], means[2, 2] = 3.0, 3.0, 3.0
    gaussians.add([0, 1, 2], means, torch.eye(hidden).repeat(3, 1, 1))
    with torch.no_grad():
        model.head.parts[0].weight.copy_(means[:2])
        model.head.parts[0].bias.zero_()
        model.head.parts[1].weight.copy_(means[2:] + means[0] + means[1])  # the new class fires on old features
        model.head.parts[1].bias.fill_(3.0)
    probe = torch.cat([means[0] + torch.randn(200, hidden, generator=torch.Generator().manual_seed(0)),
                       means[1] + torch.randn(200, hidden, generator=torch.Generator().manual_seed(1))])

    def old_to_new() -> float:
        return float((model.head(probe).argmax(-1) == 2).float().mean())

    before = old_to_new()
    task = prepared(config_for("slca"))[2][0]
    phase = alignment_phase(model, gaussians, AlignmentConfig(per_class=128, epochs=10, lr=0.05), task, seed=0)
    run_phase(Engine(TrainConfig(progress=False), cpu=True), model, phase, seed=0)
    assert before > 0.5 and old_to_new() < before / 4


def test_alignment_pseudo_features_are_seeded(config_for) -> None:
    model, _, tasks, _ = prepared(config_for("slca"))
    gaussians = ClassGaussians()
    gaussians.add([0, 1], torch.zeros(2, 32), torch.eye(32).repeat(2, 1, 1))
    model.head.add_classes(2)
    a = alignment_phase(model, gaussians, AlignmentConfig(per_class=4), tasks[0], seed=3).task.features
    b = alignment_phase(model, gaussians, AlignmentConfig(per_class=4), tasks[0], seed=3).task.features
    c = alignment_phase(model, gaussians, AlignmentConfig(per_class=4), tasks[0], seed=4).task.features
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (8, 32)


def test_method_options_are_validated(config_for) -> None:
    from citkit.errors import ConfigError

    with pytest.raises(ConfigError, match="tir"):
        config_for("ewc", tir={"enabled": True})
    with pytest.raises(ConfigError, match="threshold"):
        config_for("inflora", threshold=1.5)
    with pytest.raises(ConfigError, match="per_class"):
        config_for("slca", alignment={"per_class": 0})
    assert replace  # imported for readers extending these tests
