"""EProj: key tuning, per-image routing inside mixed batches, state round trip, one short task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.eproj import EProj, EProjConfig, expert_projector
from citkit.models.loading import load_model, load_processor

CONFIG = EProjConfig(key_steps=300)


def fresh_model(path):
    model = load_model(path)
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def tasks(tiny_model_path, tmp_path_factory) -> list[TaskData]:
    """Three toy tasks with distinct instructions (colour, shape, position)."""
    folder = tmp_path_factory.mktemp("eproj-toy")
    export(ToyWorldConfig("distinct", train_per_task=64, test_per_task=32), folder)
    config = StreamConfig(name=str(folder / "stream.yaml"), tasks=("colour", "shape", "position"))
    stream = load_stream(config, folder)
    cache = EncodingCache(SampleEncoder(load_processor(tiny_model_path)))
    return [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]


@pytest.fixture(scope="module")
def routed(tiny_model_path, tasks):
    """Keys tuned for the three tasks; the experts made different so that routing shows in the output."""
    torch.manual_seed(0)
    model = fresh_model(tiny_model_path)
    method = EProj(CONFIG)
    method.remember_base(model)
    model = method.attach(model)
    for task in tasks:
        method.before_task(task, model)
    with torch.no_grad():
        for expert in expert_projector(model).experts:
            for p in expert.parameters():
                p.add_(0.2 * torch.randn_like(p))
    model.eval()
    return model, method, method.trainable_state(model)


def prompt_batch(samples, task_data: TaskData) -> dict[str, torch.Tensor]:
    return task_data.collate([task_data.encode_prompt(s) for s in samples], "left")


def mixed_samples(tasks: list[TaskData], per_task: int | None = None) -> list[tuple[int, object]]:
    """(task index, test sample) pairs of every task, shuffled with a fixed generator."""
    pairs = [(t.index, s) for t in tasks for s in t.test[:per_task]]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    return [pairs[i] for i in order]


def test_keys_point_at_their_task_queries(routed, tasks) -> None:
    model, method, _ = routed
    assert method.image_keys.shape == (3, 64) and method.instruction_keys.shape == (3, 128)
    for task in tasks:
        image_query, instruction_query = method.queries(next(task.batches(64)), model)  # labels mask answers
        centre = F.normalize(instruction_query, dim=-1).mean(0)  # the key loss's optimum direction
        assert F.cosine_similarity(centre, method.instruction_keys[task.index], dim=0) > 0.95
        centre = F.normalize(image_query, dim=-1).mean(0)
        assert F.cosine_similarity(centre, method.image_keys[task.index], dim=0) > 0.95


def test_routing_picks_the_task_expert_inside_mixed_batches(routed, tasks) -> None:
    model, method, _ = routed
    pairs = mixed_samples(tasks)
    right = 0
    for start in range(0, len(pairs), 16):
        chunk = pairs[start:start + 16]
        chosen = method.choose_experts(prompt_batch([s for _, s in chunk], tasks[0]), model)
        right += sum(int(c) == index for c, (index, _) in zip(chosen, chunk, strict=True))
    assert right / len(pairs) >= 0.9, f"routing accuracy {right}/{len(pairs)}"


def test_mixed_batch_routing_equals_per_sample_routing(routed, tasks) -> None:
    model, method, _ = routed
    pairs = mixed_samples(tasks, per_task=2)
    batch = prompt_batch([s for _, s in pairs], tasks[0])
    chosen = method.choose_experts(batch, model)
    assert len(set(chosen.tolist())) == 3
    with torch.no_grad(), method.route(batch, model):
        mixed = model(**batch).logits[:, -1]  # (batch, vocab); prompts are left-padded
    assert expert_projector(model).routing is None  # routing ends with the context
    for row, (_, sample) in enumerate(pairs):
        single = prompt_batch([sample], tasks[0])
        assert method.choose_experts(single, model).item() == chosen[row].item()
        with torch.no_grad(), method.route(single, model):
            assert torch.allclose(model(**single).logits[0, -1], mixed[row], atol=1e-4)
    projector = expert_projector(model)  # a wrong choice shows: the experts differ
    projector.routing = chosen.roll(1)
    try:
        with torch.no_grad():
            assert not torch.allclose(model(**batch).logits[:, -1], mixed, atol=1e-3)
    finally:
        projector.routing = None


def test_state_round_trip_and_resume_rebuild_the_same_model(routed, tasks, tiny_model_path) -> None:
    model, method, saved = routed
    assert set(saved) == {f"model.multi_modal_projector.experts.{k}.{p}" for k in range(3)
                          for p in ("linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias")}
    resumed = EProj(CONFIG)
    fresh = fresh_model(tiny_model_path)
    resumed.remember_base(fresh)
    rebuilt = resumed.resume(resumed.attach(fresh), [t.name for t in tasks])
    assert {n for n, _ in rebuilt.named_parameters()} == {n for n, _ in model.named_parameters()}
    resumed.load_trainable_state(rebuilt, saved, str(tiny_model_path))
    resumed.load_state_dict(method.state_dict())
    resumed.load_extra_state(method.extra_state())
    assert resumed.extra_state() == method.extra_state() and method.extra_state()["skip_token_ids"]
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in method.state_dict().items())
    rebuilt.eval()
    batch = prompt_batch([s for _, s in mixed_samples(tasks, per_task=2)], tasks[0])
    assert torch.equal(resumed.choose_experts(batch, rebuilt), method.choose_experts(batch, model))
    with torch.no_grad(), resumed.route(batch, rebuilt):
        again = rebuilt(**batch).logits
    with torch.no_grad(), method.route(batch, model):
        assert torch.allclose(again, model(**batch).logits, atol=1e-6)


def test_one_short_task_trains_only_that_task_projector_copy(tiny_model_path, tasks) -> None:
    model = fresh_model(tiny_model_path)
    method = EProj(EProjConfig(key_steps=20))
    model = method.attach(model)
    method.before_task(tasks[0], model)
    method.before_task(tasks[1], model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expert_1 = "model.multi_modal_projector.experts.1."
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(expert_1)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainConfig(max_steps=3, progress=False, batch_size=4)
    result = Engine(config, cpu=True).train(model, method, tasks[1].source(tasks[1].train), tasks[1].name, 0)
    assert result.steps == 3
    assert result.trainable_parameters == sum(p.numel() for p in expert_projector(model).base.parameters())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


def test_also_lora_adds_one_shared_language_model_lora(tiny_model_path, tasks) -> None:
    method = EProj(EProjConfig(key_steps=5, also_lora=True))
    model = method.attach(fresh_model(tiny_model_path))
    assert isinstance(model, PeftModel)
    method.before_task(tasks[0], model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".lora_A." in n for n in trainable) and any(".experts.0." in n for n in trainable)
    assert not any("vision_tower" in n or ".base." in n for n in trainable)


class _MergeFour(torch.nn.Module):
    """A projector that merges 4 consecutive rows into one, as Qwen-VL's patch merger does 2 x 2 patches."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 3)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:  # (rows, 2) -> (rows / 4, 3)
        return self.linear(rows.reshape(-1, 8))


def test_expert_projector_places_merged_rows_and_refuses_split_groups() -> None:
    from citkit.errors import ConfigError
    from citkit.methods.eproj.layers import ExpertProjector

    experts = ExpertProjector(_MergeFour())
    experts.add_expert("base")
    experts.add_expert("base")
    with torch.no_grad():
        experts.experts[1].linear.weight.add_(1.0)
    rows = torch.randn(12, 2)  # three images of 4 rows each
    experts.routing = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    expected = torch.cat([experts.experts[1](rows[:4]), experts.experts[0](rows[4:8]), experts.experts[1](rows[8:])])
    assert torch.allclose(experts(rows), expected)
    experts.routing = torch.tensor([1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])  # images of 2 rows: a merged group mixes two
    with pytest.raises(ConfigError, match="whole per-image groups"):
        experts(rows)
