"""HiDe-LLaVA: routing by anchors, per-sample routing in mixed batches, fusion forms, state and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from citkit.data.encoding import SampleEncoder, collate
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.generation import generate
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import ConfigError, ResumeMismatchError
from citkit.methods import METHODS
from citkit.methods.hide_llava import HiDeConfig, HiDeLinear, HiDeLLaVA
from citkit.models.families import family_of
from citkit.models.loading import load_model, load_processor


@pytest.fixture(scope="module")
def world(tiny_model_path: Path, small_stream_file: Path):  # type: ignore[no-untyped-def]
    processor = load_processor(tiny_model_path)
    cache = EncodingCache(SampleEncoder(processor))
    stream = load_stream(StreamConfig(name=str(small_stream_file)), small_stream_file.parent)
    return [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)], cache, processor


def fresh(tiny_model_path: Path, config: HiDeConfig | None = None) -> tuple[HiDeLLaVA, nn.Module]:
    model = load_model(tiny_model_path)
    model.requires_grad_(False)
    method = HiDeLLaVA(config or HiDeConfig())
    return method, method.attach(model)


def learn_anchors(method: HiDeLLaVA, model: nn.Module, tasks: list[TaskData], seed: int = 0) -> None:
    """Each task's before/after hooks without training; the experts get random B so they matter."""
    generator = torch.Generator().manual_seed(seed)
    for task in tasks:
        method.before_task(task, model)
        for layer in method._layers:
            k = layer.training_expert
            layer.experts_B[k].data = torch.randn(layer.experts_B[k].shape, generator=generator) * 0.5
        method.after_task(task, model)


def prompts(tasks: list[TaskData], cache: EncodingCache, per_task: int | None = None):  # type: ignore[no-untyped-def]
    return [(i, cache.prompt(s)) for i, t in enumerate(tasks) for s in t.test[:per_task]]


def test_registered_and_top_layer_expanded_by_default(tiny_model_path: Path) -> None:
    assert METHODS.get("hide-llava") is HiDeLLaVA
    method, model = fresh(tiny_model_path)
    top = model.config.text_config.num_hidden_layers - 1
    expanded = {name.split(".layers.")[1].split(".")[0] for name, m in model.named_modules()
                if isinstance(m, HiDeLinear) and m.expanded}
    assert expanded == {str(top)} and method.extra_state()["expanded_layers"] == [top]
    assert len(method._layers) == (top + 1) * 7  # every block x q, k, v, o, gate, up, down
    assert HiDeConfig(layout="merge-all").expanded(4) == frozenset()
    assert HiDeConfig(layout="expand-all").expanded(4) == frozenset(range(4))
    assert HiDeConfig(expanded_layers=(0, -1)).expanded(4) == frozenset({0, 3})
    with pytest.raises(ConfigError, match="expanded layer 4 does not exist; the model has 4"):
        HiDeConfig(expanded_layers=(4,)).expanded(4)
    with pytest.raises(ConfigError, match="fusion 'both'"):
        HiDeConfig(fusion="both")  # type: ignore[arg-type]


def _confident_share(tiny_model_path: Path, tasks: list[TaskData], cache: EncodingCache, config: HiDeConfig) -> float:
    """Share of test samples that get >= 90 % routing weight on their own task."""
    method, model = fresh(tiny_model_path, config)
    learn_anchors(method, model, tasks)
    confident, total = 0, 0
    for i, task in enumerate(tasks):
        batch = collate([cache.prompt(s) for s in task.test], cache.pad_id, "left")
        weights = method.routing_weights(batch, model)  # (samples, tasks)
        assert weights.shape == (len(task.test), len(tasks))
        assert torch.allclose(weights.sum(1), torch.ones(len(task.test)))
        confident += int((weights[:, i] >= 0.9).sum())
        total += len(task.test)
    return confident / total


def test_default_router_picks_the_right_task_on_the_default_world(tiny_model_path: Path, tmp_path: Path) -> None:
    """The default world's tasks come from distinct visual domains with distinct instructions: the default
    router (image weight 0.5) puts >= 90 % weight on the right task for >= 90 % of test samples."""
    from citkit.data.toy.world import ToyWorldConfig, export

    stream_file = export(ToyWorldConfig("domains", train_per_task=48, test_per_task=12, seed=3), tmp_path)
    cache = EncodingCache(SampleEncoder(load_processor(tiny_model_path)))
    stream = load_stream(StreamConfig(name=str(stream_file)), tmp_path)
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    assert _confident_share(tiny_model_path, tasks, cache, HiDeConfig()) >= 0.9


def test_instruction_router_separates_the_first_world_tasks(small_stream_file: Path) -> None:
    """The first (format-shift) world draws every task's images from one distribution, so only the instruction
    tells the tasks apart: with its own model, tiny-v1, routing on the instruction anchor alone sends >= 90 % of
    test samples to their own task with >= 90 % weight."""
    from citkit.models.registry import packaged_tiny_model

    model_path = packaged_tiny_model("tiny-v1")
    cache = EncodingCache(SampleEncoder(load_processor(model_path)))
    stream = load_stream(StreamConfig(name=str(small_stream_file)), small_stream_file.parent)
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    assert _confident_share(model_path, tasks, cache, HiDeConfig(image_weight=0.0)) >= 0.9


def test_routing_covers_trained_tasks_only(tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    tasks, cache, _ = world
    method, model = fresh(tiny_model_path)
    learn_anchors(method, model, tasks[:2])
    method.before_task(tasks[2], model)  # a third expert exists but is not trained yet
    batch = collate([cache.prompt(s) for s in tasks[2].test[:3]], cache.pad_id, "left")
    assert method.routing_weights(batch, model).shape == (3, 2)


def test_mixed_batch_routes_each_sample_as_if_alone(tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    tasks, cache, processor = world
    method, model = fresh(tiny_model_path)
    learn_anchors(method, model, tasks)
    items = prompts(tasks, cache, per_task=2)  # 12 prompts, two of each task, interleaved by length
    encoded = [e for _, e in items]
    mixed = collate(encoded, cache.pad_id, "left")
    together = method.routing_weights(mixed, model)
    for row, item in enumerate(encoded):
        alone = method.routing_weights(collate([item], cache.pad_id, "left"), model)
        assert torch.allclose(together[row], alone[0], atol=1e-5)
    top = next(layer for layer in method._layers if layer.expanded)
    seen: list[bool] = []
    top.register_forward_hook(lambda module, args, out: seen.append(module.routing is not None))
    route = lambda batch: method.route(batch, model)  # noqa: E731
    batched = generate(model, encoded, processor.tokenizer, 12, 6, route=route).predictions
    assert len(seen) >= 6 and all(seen)  # every forward of the KV-cached generate call was routed
    assert top.routing is None  # and the weights are gone afterwards
    single = generate(model, encoded, processor.tokenizer, 1, 6, route=route).predictions
    assert batched == single
    # the routing matters: without it (uniform weights) the top layer, and so the logits, differ
    with torch.no_grad():
        uniform = model(**mixed).logits
        with method.route(mixed, model):
            routed = model(**mixed).logits
    assert (uniform - routed).abs().max() > 1e-2


def hand_layer(expanded: bool) -> HiDeLinear:
    """in 3, out 2, rank 1, scaling 1, zero base; two experts with small integer factors."""
    base = nn.Linear(3, 2, bias=False)
    nn.init.zeros_(base.weight)
    layer = HiDeLinear(base, rank=1, alpha=1.0, dropout=0.0, expanded=expanded)
    for a, b in (([1.0, 0.0, 2.0], [1.0, 1.0]), ([0.0, 1.0, 1.0], [2.0, -1.0])):
        k = layer.add_expert()
        layer.experts_A[k].data = torch.tensor([a])        # (1, 3)
        layer.experts_B[k].data = torch.tensor([b]).T      # (2, 1)
    return layer


def test_fusion_forms_compute_what_they_claim() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0]]])  # (batch 1, seq 1, in 3); A1 x = 7, A2 x = 5
    layer = hand_layer(expanded=False)
    layer.materialise(2, "paper")  # B1 A1 x + B2 A2 x = 7 (1, 1) + 5 (2, -1) = (17, 2)
    assert layer(x).flatten().tolist() == [17.0, 2.0]
    layer.materialise(2, "code")   # (B1 + B2)(A1 + A2) x = (3, 0) * 12 = (36, 0)
    assert layer(x).flatten().tolist() == [36.0, 0.0]
    layer.materialise(1, "code")   # one expert: both forms are B1 A1 x = (7, 7)
    assert layer(x).flatten().tolist() == [7.0, 7.0]
    assert layer.combined_A.shape == (1, 3)  # code fusion stays rank r: inference costs one LoRA


def test_code_fused_layer_folds_its_experts_exactly() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    plain = hand_layer(expanded=False)
    folding = HiDeLinear(plain.base, rank=1, alpha=1.0, dropout=0.0, expanded=False, folds=True)
    for k in range(plain.num_experts):  # the same two experts, folded after each task as the method does
        new = folding.add_expert()
        folding.experts_A[new].data = plain.experts_A[k].data.clone()
        folding.experts_B[new].data = plain.experts_B[k].data.clone()
        folding.fold()
    assert folding.num_experts == 1  # rank r stored, not T r
    plain.materialise(2, "code")
    folding.materialise(2, "code")
    assert folding(x).flatten().tolist() == plain(x).flatten().tolist() == [36.0, 0.0]
    assert not HiDeLinear(plain.base, 1, 1.0, 0.0, expanded=True, folds=True).folds  # routed layers never fold


@pytest.mark.parametrize("config, fused_experts, top_experts", [
    (HiDeConfig(), 1, 3),                          # code fusion: one folded LoRA below, 3 experts on top
    (HiDeConfig(fusion="paper"), 3, 3),            # paper fusion keeps every expert to rebuild sum B_c A_c
    (HiDeConfig(layout="expand-all"), 3, 3),       # every layer routed
    (HiDeConfig(layout="merge-all"), 1, 1),        # every layer fused: one LoRA in all
])
def test_stored_experts_after_three_tasks(tiny_model_path: Path, world, config: HiDeConfig, fused_experts: int,
                                          top_experts: int) -> None:  # type: ignore[no-untyped-def]
    tasks, _, _ = world
    method, model = fresh(tiny_model_path, config)
    learn_anchors(method, model, tasks[:3])
    top = model.config.text_config.num_hidden_layers - 1
    for name, layer in model.named_modules():
        if isinstance(layer, HiDeLinear):
            is_top = f".layers.{top}." in name
            expected = top_experts if is_top else fused_experts
            if config.layout == "expand-all":
                expected = 3
            assert layer.num_experts == expected, name
    one_lora = sum(layer.rank * (layer.base.in_features + layer.base.out_features) for layer in method._layers)
    stored = sum(p.numel() for n, p in model.named_parameters() if ".experts_" in n)
    blocks = top + 1  # (L - 1 + T) / L times one LoRA: one fused expert per lower block, T in the top one
    expected_total = {("hierarchical", "code"): one_lora * (blocks - 1 + 3) // blocks,
                      ("hierarchical", "paper"): 3 * one_lora,
                      ("expand-all", "code"): 3 * one_lora, ("merge-all", "code"): one_lora}
    assert stored == expected_total[(config.layout, config.fusion)]


def test_expanded_layer_mixes_experts_per_sample() -> None:
    layer = hand_layer(expanded=True)
    layer.materialise(2, "code")  # expanded layers never fuse
    x = torch.tensor([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]]])  # two samples
    layer.routing = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    out = layer(x)  # sample 0: (7, 7); sample 1: 0.25 (7, 7) + 0.75 (10, -5) = (9.25, -2)
    assert out[0].flatten().tolist() == [7.0, 7.0] and out[1].flatten().tolist() == [9.25, -2.0]
    layer.routing = torch.tensor([[1.0, 0.0]])
    with pytest.raises(ConfigError, match="routing weights of shape"):
        layer(x)


def test_training_touches_only_the_current_expert(tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    tasks, _, _ = world
    method, model = fresh(tiny_model_path)
    learn_anchors(method, model, tasks[:1])
    method.before_task(tasks[1], model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".experts_A.1", ".experts_B.1")) for n in trainable)
    config = TrainConfig(max_steps=3, batch_size=8, progress=False)
    result = Engine(config, cpu=True).train(model, method, tasks[1].source(tasks[1].train), tasks[1].name, 0)
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(v)) for v in result.final_loss.values())
    after = dict(model.named_parameters())
    changed = {n for n in before if n in after and not torch.equal(before[n], after[n])}
    assert changed and changed <= trainable
    method.after_task(tasks[1], model)
    assert method.tasks == [tasks[0].name, tasks[1].name]
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("fusion", ["paper", "code"])
def test_state_round_trip_and_resume_rebuilds_structure(tiny_model_path: Path, world, fusion: str) -> None:  # type: ignore[no-untyped-def]
    tasks, cache, _ = world
    config = HiDeConfig(fusion=fusion)
    method, model = fresh(tiny_model_path, config)
    learn_anchors(method, model, tasks[:3])
    tensors, extra = method.state_dict(), method.extra_state()
    assert extra["fusion"] == fusion and extra["tasks"] == [t.name for t in tasks[:3]]
    assert tensors["anchors.text"].shape[0] == 3
    experts = {n: p.detach().clone() for n, p in model.named_parameters() if ".experts_" in n}

    resumed, model2 = fresh(tiny_model_path, config)
    resumed.resume(model2, extra["tasks"])
    params = dict(model2.named_parameters())
    assert set(experts) == {n for n in params if ".experts_" in n}  # folded layers rebuilt folded
    with torch.no_grad():
        for name, value in experts.items():
            params[name].copy_(value)
    resumed.load_state_dict(tensors)
    resumed.load_extra_state(extra)

    batch = collate([cache.prompt(s) for t in tasks[:3] for s in t.test[:2]], cache.pad_id, "left")
    assert torch.allclose(method.routing_weights(batch, model), resumed.routing_weights(batch, model2))
    with torch.no_grad(), method.route(batch, model):
        expected = model(**batch).logits
    with torch.no_grad(), resumed.route(batch, model2):
        got = model2(**batch).logits
    assert torch.allclose(expected, got, atol=1e-5)

    other = "code" if fusion == "paper" else "paper"
    with pytest.raises(ResumeMismatchError, match=f"fusion='{fusion}'"):
        HiDeLLaVA(HiDeConfig(fusion=other)).load_extra_state(extra)


def test_clip_dual_encoder_option_loads_from_a_local_folder(tmp_path: Path, tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    from transformers import CLIPConfig, CLIPModel

    from citkit.errors import ModelLoadError

    tasks, cache, processor = world
    text = {"vocab_size": processor.tokenizer.vocab_size, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(tmp_path / "clip")
    processor.tokenizer.save_pretrained(tmp_path / "clip")
    method, model = fresh(tiny_model_path, HiDeConfig(anchor_encoder="clip", clip_path=str(tmp_path / "clip")))
    learn_anchors(method, model, tasks[:2])
    assert method.image_anchors[0].shape == (16,) and method.text_anchors[0].shape == (32,)
    batch = collate([cache.prompt(s) for s in tasks[1].test[:3]], cache.pad_id, "left")
    weights = method.routing_weights(batch, model)
    assert weights.shape == (3, 2) and torch.allclose(weights.sum(1), torch.ones(3))
    with pytest.raises(ConfigError, match="needs clip_path"):
        HiDeConfig(anchor_encoder="clip")
    with pytest.raises(ModelLoadError, match="is not a folder"):
        HiDeLLaVA(HiDeConfig(anchor_encoder="clip", clip_path=str(tmp_path / "nothing")))


@pytest.mark.parametrize("init, low, high", [("kaiming", 0.04, 0.06), ("normal", 0.009, 0.011)])
def test_expert_init_option(tiny_model_path: Path, init: str, low: float, high: float) -> None:
    method, model = fresh(tiny_model_path, HiDeConfig(expert_init=init))  # type: ignore[arg-type]
    a = torch.cat([layer.experts_A[layer.add_expert()].flatten() for layer in method._layers])
    # Kaiming-uniform with a = sqrt(5) on 128 inputs: U(-1/sqrt(128), 1/sqrt(128)), std 1/sqrt(3 * 128) = 0.051
    # (down_proj has 256 inputs, std 0.036, which pulls the pooled std to 0.048)
    assert low <= float(a.detach().std()) <= high
    assert all(not layer.experts_B[0].any() for layer in method._layers)  # B starts at zero: a no-op expert


def test_expert_init_defaults_to_the_authors_normal(tiny_model_path: Path) -> None:
    assert HiDeConfig().expert_init == "normal"
    method, _ = fresh(tiny_model_path)
    a = torch.cat([layer.experts_A[layer.add_expert()].flatten() for layer in method._layers])
    assert 0.009 <= float(a.detach().std()) <= 0.011


def test_oracle_routing_puts_all_weight_on_the_evaluated_task(tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    tasks, cache, _ = world
    method, model = fresh(tiny_model_path, HiDeConfig(oracle_routing=True))
    learn_anchors(method, model, tasks[:3])
    top = next(layer for layer in method._layers if layer.expanded)
    batch = collate([cache.prompt(s) for s in tasks[1].test[:4]], cache.pad_id, "left")
    router = method.routing_weights(batch, model)
    with method.evaluating(tasks[1]), method.route(batch, model):
        assert top.routing is not None and top.routing.tolist() == [[0.0, 1.0, 0.0]] * 4
    with method.evaluating(tasks[4]), method.route(batch, model):  # a task not trained yet: the router decides
        assert torch.equal(top.routing, router)
    with method.route(batch, model):  # outside an evaluation: the router decides
        assert torch.equal(top.routing, router)
    plain, plain_model = fresh(tiny_model_path)  # without the option the evaluated task is ignored
    learn_anchors(plain, plain_model, tasks[:3])
    with plain.evaluating(tasks[1]), plain.route(batch, plain_model):
        routed = next(layer for layer in plain._layers if layer.expanded).routing
        assert torch.equal(routed, plain.routing_weights(batch, plain_model))


def test_the_evaluator_tells_the_method_which_task_it_scores(tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    from citkit.eval.evaluator import EvalConfig, evaluate_task

    tasks, _, processor = world
    method, model = fresh(tiny_model_path, HiDeConfig(oracle_routing=True))
    learn_anchors(method, model, tasks[:2])
    top = next(layer for layer in method._layers if layer.expanded)
    seen: list[list[float]] = []
    top.register_forward_hook(lambda module, args, out: seen.append(module.routing[0].tolist()))
    evaluate_task(model, tasks[1], EvalConfig(batch_size=4, max_new_tokens=2), method, processor.tokenizer)
    assert seen and all(weights == [0.0, 1.0] for weights in seen)


def test_inference_report_measures_the_router_per_trained_task(tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    tasks, cache, _ = world
    for config in (HiDeConfig(image_weight=0.0), HiDeConfig(image_weight=0.0, oracle_routing=True)):
        method, model = fresh(tiny_model_path, config)
        learn_anchors(method, model, tasks[:3])
        routing = method.inference_report(tasks, model)["routing"]
        assert list(routing) == [t.name for t in tasks[:3]]  # trained tasks only
        for i, task in enumerate(tasks[:3]):
            weights = method.routing_weights(collate([cache.prompt(s) for s in task.test], cache.pad_id, "left"), model)
            assert routing[task.name]["argmax"] == pytest.approx(100.0 * float((weights.argmax(1) == i).float().mean()))
            assert routing[task.name]["weight"] == pytest.approx(100.0 * float(weights[:, i].mean()), abs=1e-4)
            assert routing[task.name]["samples"] == len(task.test)
    assert min(r["argmax"] for r in routing.values()) >= 90  # instructions tell the toy tasks apart


def test_a_run_reports_routing_per_row(tmp_path: Path, small_stream_file: Path) -> None:
    from citkit.data.streams import read_stream_file
    from citkit.io import read_json
    from citkit.run_config import build_run_config
    from citkit.runner import run

    first, second = [t["name"] for t in read_stream_file(small_stream_file)["tasks"][:2]]
    config = build_run_config({}, ["train.max_steps=1", "train.batch_size=4", "train.progress=false",
                                   f"stream.tasks=[{first}, {second}]", "stream.test_limit=6",
                                   "stream.allow_unknown_tokens=true",  # whichever world and model are current
                                   f"stream.name={small_stream_file}"], method="hide-llava",
                              runs_dir=str(tmp_path / "runs"))
    result = run(config)
    log = read_json(result.run_dir / "tasks.json")
    assert list(log[0]["inference"]["routing"]) == [first]
    assert list(log[1]["inference"]["routing"]) == [first, second]
    assert log[0]["inference"]["routing"][first]["argmax"] == 100.0  # one trained task: always picked
    report = (result.run_dir / "report.md").read_text()
    cell = log[1]["inference"]["routing"][second]
    assert "## Routing" in report and f"{cell['argmax']:.1f} / {cell['weight']:.1f}" in report


@pytest.mark.parametrize("center", [True, False])
def test_center_features_and_image_weight_compute_the_documented_score(tiny_model_path: Path, world,
                                                                       center: bool) -> None:  # type: ignore[no-untyped-def]
    """r_c = w cos(img - m_img, imgAnchor_c - m_img) + (1 - w) cos(txt - m_txt, txtAnchor_c - m_txt), m the mean
    of the trained tasks' anchors when centring (0 otherwise); weights softmax(r / T)."""
    tasks, cache, _ = world
    method, model = fresh(tiny_model_path, HiDeConfig(center_features=center, image_weight=0.3, temperature=0.2))
    learn_anchors(method, model, tasks[:3])
    batch = collate([cache.prompt(s) for s in tasks[2].test[:3]], cache.pad_id, "left")
    image, text, has_image = method._sample_features(batch, model)
    assert has_image.all()

    def cosines(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        m = anchors.mean(0) if center else torch.zeros(anchors.shape[1])
        x, anchors = x - m, anchors - m
        return (x @ anchors.T) / (x.norm(dim=1, keepdim=True) * anchors.norm(dim=1))

    r = 0.3 * cosines(image, torch.stack(method.image_anchors)) + 0.7 * cosines(text, torch.stack(method.text_anchors))
    assert torch.allclose(method.routing_weights(batch, model), torch.softmax(r / 0.2, dim=1), atol=1e-5)


def test_vision_experts_are_routed_in_the_tower_and_the_router_reads_the_frozen_tower(
        tiny_model_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    tasks, cache, _ = world
    method, model = fresh(tiny_model_path, HiDeConfig(layout="expand-all", vision_experts=True))
    tower = family_of(model).vision_tower + "."
    vision = [m for n, m in model.named_modules() if n.startswith(tower) and isinstance(m, HiDeLinear)]
    assert vision and all(layer.expanded for layer in vision)
    assert all(n.endswith(".base") for n, m in model.named_modules() if n.startswith(tower) and type(m) is nn.Linear)
    method.before_task(tasks[0], model)
    assert any(n.startswith(tower) and p.requires_grad for n, p in model.named_parameters())  # trained with the task
    method.after_task(tasks[0], model)
    learn_anchors(method, model, tasks[1:3])  # random B everywhere, the tower's experts included
    batch = collate([cache.prompt(s) for t in tasks[:3] for s in t.test[:2]], cache.pad_id, "left")
    base = load_model(tiny_model_path)
    with torch.no_grad():
        expected = method.features.images(base, batch)
        with method._frozen_vision():
            frozen = method.features.images(model, batch)
        adapted = method.features.images(model, batch)  # outside a routing context: every expert counts the same
    assert torch.equal(frozen, expected) and not torch.allclose(adapted, expected)
    with torch.no_grad():
        routed_on = method._sample_features(batch, model)[0]  # what the router and the anchors read
        for layer in vision:
            layer.enabled = False
        without = method._sample_features(batch, model)[0]
        for layer in vision:
            layer.enabled = True
    assert routed_on is not None and torch.equal(routed_on, without)
    with method.route(batch, model):
        assert all(layer.routing is not None and layer.routing.shape == (len(batch["input_ids"]), 3)
                   for layer in vision)
