"""LwF (citkit/methods/lwf.py): the distillation term by hand and on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from citkit.errors import ConfigError
from citkit.methods.lwf import LwF, LwFConfig, distillation_kl


def test_config() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        LwFConfig(temperature=0.0)


def test_distillation_kl_by_hand() -> None:
    teacher = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))  # (batch 1, seq 2, vocab 2)
    student = torch.log(torch.tensor([[[0.25, 0.75], [0.1, 0.9]]]))
    only_first = torch.tensor([[True, False]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert distillation_kl(student, teacher, only_first, 1.0).item() == pytest.approx(expected)
    everywhere = torch.ones(1, 2, dtype=torch.bool)
    assert distillation_kl(teacher, teacher, everywhere, 2.0).item() == pytest.approx(0.0)


def perturb(model: torch.nn.Module, amount: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.add_(amount)


def test_zero_for_the_teacher_itself_positive_after_moving(tiny_model, toy_tasks, train_one) -> None:
    method = LwF()
    model, result = train_one(method, method.attach(tiny_model), 0)
    assert result.final_loss["lwf"] == 0.0 and not method.teacher  # first task: no teacher
    method.before_task(toy_tasks[1], model)
    model.eval()  # no dropout, so student and teacher run the same function
    batch = next(toy_tasks[1].batches(4))
    assert method.loss(batch, model(**batch), model)["lwf"].item() == pytest.approx(0.0, abs=1e-6)

    teacher_before = method.teacher_logits(batch, model)
    perturb(model, 0.05)
    moved = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    term = method.loss(batch, model(**batch), model)["lwf"]
    assert term.item() > 1e-4 and term.requires_grad
    # the teacher stays frozen
    torch.testing.assert_close(method.teacher_logits(batch, model), teacher_before)
    for name, p in model.named_parameters():  # the swap leaves the student's weights in place
        if p.requires_grad:
            assert torch.equal(p, moved[name])

    resumed = LwF()  # no checkpointed state: the teacher is rebuilt from the loaded adapter
    assert method.state_dict() == {} and method.extra_state() == {}
    perturb(model, -0.05)
    resumed.before_task(toy_tasks[1], model)
    perturb(model, 0.05)
    assert resumed.loss(batch, model(**batch), model)["lwf"].item() == pytest.approx(term.item(), rel=1e-5)


def test_two_tasks_on_the_tiny_model(tiny_model, train_one) -> None:
    method = LwF()
    model, _ = train_one(method, method.attach(tiny_model), 0)
    model, result = train_one(method, model, 1, steps=3)
    assert result.final_loss["lwf"] > 0
