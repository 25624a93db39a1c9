"""O-LoRA: the orthogonality term, frozen earlier adapters, resume, one short task on the tiny model."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.olora import OLoRA, OLoRAConfig, orthogonality_penalty
from citkit.models.loading import load_model, load_processor


@pytest.fixture(scope="module")
def tasks(tiny_model_path, small_stream_file) -> list[TaskData]:
    stream = load_stream(StreamConfig(name=str(small_stream_file)), small_stream_file.parent)
    cache = EncodingCache(SampleEncoder(load_processor(tiny_model_path)))
    return [TaskData(task, i, cache) for i, task in enumerate(stream.tasks[:3])]


def fresh_model(path):
    model = load_model(path)
    model.requires_grad_(False)
    return model


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def test_penalty_is_zero_for_orthogonal_rows_and_hand_computed_otherwise() -> None:
    old = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]])
    assert orthogonality_penalty([old], torch.tensor([[0.0, 0, 1, 0], [0, 0, 0, 2]])) == 0
    # old @ new.T = [[1, 0], [2, 0]] -> |.| summed = 3
    assert orthogonality_penalty([old], torch.tensor([[1.0, 2, 0, 0], [0, 0, 3, 0]])) == pytest.approx(3.0)
    assert orthogonality_penalty([], torch.ones(2, 4)) == 0
    two_old = [old, torch.tensor([[0.0, 0, 0, -1]])]  # second old adapter: -e4 against new rows 2 e4 -> 2
    assert orthogonality_penalty(two_old, torch.tensor([[0.0, 0, 1, 0], [0, 0, 0, 2]])) == pytest.approx(2.0)


def test_model_penalty_zero_first_positive_then_zero_for_orthogonal_rows(tiny_model_path, tasks) -> None:
    method = OLoRA(OLoRAConfig(orthogonality_weight=0.5))
    model = method.attach(fresh_model(tiny_model_path))
    method.before_task(tasks[0], model)
    assert float(method.loss({}, None, model)["orthogonality"]) == 0.0
    method.before_task(tasks[1], model)
    random_terms = float(method.loss({}, None, model)["orthogonality"].detach())
    expected = 0.5 * sum(float(orthogonality_penalty([m.lora_A["task_0"].weight], m.lora_A["task_1"].weight))
                         for m in lora_layers(model))
    assert random_terms > 0 and random_terms == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # rows 0-7 of the identity for task 0, rows 8-15 for task 1
        for layer in lora_layers(model):
            eye = torch.eye(layer.lora_A["task_0"].weight.shape[1])
            layer.lora_A["task_0"].weight.copy_(eye[:8])
            layer.lora_A["task_1"].weight.copy_(3 * eye[8:16])
    assert float(method.loss({}, None, model)["orthogonality"]) == 0.0


def test_old_adapters_frozen_and_still_in_the_forward_pass(tiny_model_path, tasks) -> None:
    method = OLoRA()
    model = method.attach(fresh_model(tiny_model_path))
    config = TrainConfig(max_steps=2, progress=False, batch_size=4, lr=1e-2)
    method.before_task(tasks[0], model)
    Engine(config, cpu=True).train(model, method, tasks[0].source(tasks[0].train), tasks[0].name, 0)
    method.before_task(tasks[1], model)
    assert model.base_model.active_adapters == ["task_0", "task_1"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".task_1." in n for n in trainable)
    assert any(".task_0." in n for n, _ in model.named_parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".task_" in n}
    result = Engine(config, cpu=True).train(model, method, tasks[1].source(tasks[1].train), tasks[1].name, 1)
    assert set(result.final_loss) == {"ce", "orthogonality", "l2"} and result.final_loss["orthogonality"] > 0
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in before.items() if ".task_0." in n)
    assert any(not torch.equal(after[n], v) for n, v in before.items() if ".lora_B.task_1." in n)
    # task 0's adapter is part of the output: zeroing its B changes the logits
    batch = next(tasks[1].batches(4))
    with torch.no_grad():
        reference = model(**batch).logits
        for layer in lora_layers(model):
            layer.lora_B["task_0"].weight.zero_()
        assert not torch.allclose(model(**batch).logits, reference)


def test_resume_rebuilds_the_same_parameters_and_state(tiny_model_path, tasks) -> None:
    method = OLoRA()
    model = fresh_model(tiny_model_path)
    method.remember_base(model)
    model = method.attach(model)
    for task in tasks:
        method.before_task(task, model)
    with torch.no_grad():
        for layer in lora_layers(model):
            for name in ("task_0", "task_1", "task_2"):
                layer.lora_B[name].weight.normal_(std=0.05)
    saved = method.trainable_state(model)
    assert len(saved) == 3 * 2 * len(lora_layers(model))  # three adapters, A and B, every wrapped layer
    assert len(lora_layers(model)) == model.config.text_config.num_hidden_layers * 7

    resumed = OLoRA()
    fresh = fresh_model(tiny_model_path)
    resumed.remember_base(fresh)
    rebuilt = resumed.resume(resumed.attach(fresh), [t.name for t in tasks])
    assert {n for n, _ in rebuilt.named_parameters()} == {n for n, _ in model.named_parameters()}
    resumed.load_trainable_state(rebuilt, saved, str(tiny_model_path))
    resumed.load_state_dict(method.state_dict())
    resumed.load_extra_state(method.extra_state())
    assert resumed.extra_state() == {"adapters": ["task_0", "task_1", "task_2"]}
    assert rebuilt.base_model.active_adapters == model.base_model.active_adapters
    batch = next(tasks[0].batches(4))
    model.eval(), rebuilt.eval()  # peft leaves a wrapped model in training mode (LoRA dropout on)
    with torch.no_grad():
        assert torch.allclose(rebuilt(**batch).logits, model(**batch).logits, atol=1e-5)
    with pytest.raises(Exception, match="differ"):
        OLoRA().load_extra_state({"adapters": ["task_0", "task_9"]})
