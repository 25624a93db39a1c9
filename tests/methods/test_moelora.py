"""MoELoRA: router weights, the rank split, the layer's formula, one short task, the state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import ConfigError
from citkit.methods.moelora import (
    MoELoRA,
    MoELoRAConfig,
    MoELoRALinear,
    moelora_layers,
    record_router_weights,
)
from citkit.models.loading import load_model, load_processor
from citkit.models.lora import AdapterConfig


@pytest.fixture(scope="module")
def task(tiny_model_path, small_stream_file) -> TaskData:
    stream = load_stream(StreamConfig(name=str(small_stream_file)), small_stream_file.parent)
    return TaskData(stream.tasks[0], 0, EncodingCache(SampleEncoder(load_processor(tiny_model_path))))


def fresh_model(path):
    model = load_model(path)
    model.requires_grad_(False)
    return model


def test_layer_matches_the_formula_written_out_per_expert() -> None:
    torch.manual_seed(0)
    layer = MoELoRALinear(nn.Linear(6, 5), rank=4, num_experts=2, alpha=8.0, dropout=0.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 6)
    gate = torch.softmax(x @ layer.router.weight.T, dim=-1)  # (3, E)
    expected = layer.base_layer(x) + (8.0 / 4) * sum(
        gate[:, e:e + 1] * (x @ layer.lora_A[e].T @ layer.lora_B[e].T) for e in range(2))
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_experts_split_the_rank_and_only_language_model_layers_are_wrapped(tiny_model_path) -> None:
    model = fresh_model(tiny_model_path)
    MoELoRA(MoELoRAConfig(num_experts=4), AdapterConfig(rank=8)).attach(model)
    layers = dict(moelora_layers(model))
    blocks = model.config.text_config.num_hidden_layers
    assert len(layers) == blocks * 7  # every decoder block x (q, k, v, o, gate, up, down)
    assert all(".language_model." in name for name in layers)
    q_proj = layers["model.language_model.layers.0.self_attn.q_proj"]
    assert q_proj.lora_A.shape == (4, 2, 128) and q_proj.lora_B.shape == (4, 128, 2)
    assert q_proj.router.weight.shape == (4, 128) and q_proj.scaling == 16.0 / 8
    down = layers["model.language_model.layers.3.mlp.down_proj"]
    assert down.lora_A.shape == (4, 2, 256) and down.lora_B.shape == (4, 128, 2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == blocks * 7 * 3
    assert all(n.endswith(("lora_A", "lora_B", "router.weight")) for n in trainable)
    with pytest.raises(ConfigError, match="divisible"):
        MoELoRA(MoELoRAConfig(num_experts=3), AdapterConfig(rank=8)).attach(fresh_model(tiny_model_path))


def test_router_weights_sum_to_one_per_token(tiny_model_path, task) -> None:
    model = fresh_model(tiny_model_path)
    MoELoRA(MoELoRAConfig(num_experts=4)).attach(model)
    batch = next(task.batches(3))
    with torch.no_grad(), record_router_weights(model) as weights:
        model(**batch)
    assert len(weights) == model.config.text_config.num_hidden_layers * 7
    seq = batch["input_ids"].shape[1]
    for name, w in weights.items():
        assert w.shape == (3, seq, 4), name
        assert torch.allclose(w.sum(-1), torch.ones(3, seq), atol=1e-5)
        assert (w > 0).all()
    assert not any(layer._router_sink for _, layer in moelora_layers(model))  # recording stops on exit


def test_output_equals_the_base_model_while_every_B_is_zero(tiny_model_path, task) -> None:
    base = fresh_model(tiny_model_path)
    model = fresh_model(tiny_model_path)
    MoELoRA().attach(model)
    model.eval()
    batch = next(task.batches(3))
    with torch.no_grad():
        reference = base(**batch).logits
        assert torch.allclose(model(**batch).logits, reference, atol=1e-6)
        next(layer for _, layer in moelora_layers(model)).lora_B.fill_(0.1)
        assert not torch.allclose(model(**batch).logits, reference, atol=1e-4)


def test_one_short_task_trains_experts_and_routers_and_round_trips(tiny_model_path, task) -> None:
    model = fresh_model(tiny_model_path)
    method = MoELoRA(MoELoRAConfig(num_experts=2))
    method.remember_base(model)
    model = method.attach(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    config = TrainConfig(max_steps=3, progress=False, batch_size=4, lr=1e-2)
    result = Engine(config, cpu=True).train(model, method, task.source(task.train), task.name, 0)
    assert result.steps == 3 and set(result.final_loss) == {"ce"}
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    layer = params["model.language_model.layers.0.self_attn.q_proj.lora_B"]
    assert layer.abs().sum() > 0  # B moved off zero (from then on the routers and A's get gradients too)
    saved = method.trainable_state(model)
    assert saved and all(n.endswith(("lora_A", "lora_B", "router.weight")) for n in saved)
    assert method.state_dict() == {} and method.extra_state() == {}

    again = MoELoRA(MoELoRAConfig(num_experts=2))
    restored = fresh_model(tiny_model_path)
    again.remember_base(restored)
    restored = again.attach(restored)
    again.load_trainable_state(restored, saved, str(tiny_model_path))
    model.eval(), restored.eval()
    batch = next(task.batches(2))
    with torch.no_grad():
        assert torch.allclose(restored(**batch).logits, model(**batch).logits, atol=1e-6)
