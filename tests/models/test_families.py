"""Every supported architecture through the families boundary, on tiny random-weight models.

Each family's tiny model is built from its real config, model and processor classes (video
processor included, which needs torchvision) and a chat template in its format, saved with
save_pretrained and loaded back through citkit's loader; then trained on two tasks, evaluated,
reloaded, and run with every routing method.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from citkit.data.encoding import SampleEncoder, collate
from citkit.data.llava_format import read_test, read_train
from citkit.data.samples import Turn
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.engine.generation import generate
from citkit.errors import ConfigError
from citkit.methods import METHODS
from citkit.methods.eproj.layers import ExpertProjector
from citkit.models import families
from citkit.models.loading import load_model, load_processor
from citkit.models.lora import AdapterConfig, add_lora
from citkit.models.tiny_families import (
    TINY_FAMILIES,
    build_tiny_family,
    save_tiny_family,
    tiny_image_processor,
)
from citkit.run_config import build_run_config
from citkit.rundir import RunDirectory
from citkit.runner import run


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(ToyWorldConfig("distinct", train_per_task=8, test_per_task=4, seed=1), tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model type -> folder of its saved tiny model (built on first use)."""
    return {}


def _saved(saved: dict[str, Path], kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if kind not in saved:
        saved[kind] = save_tiny_family(kind, tmp_path_factory.mktemp(kind))
    return saved[kind]


def _run_config(stream: Path, model_path: Path, runs: Path, method: str, **options: object):
    overrides = [f"stream.name={stream}", "stream.tasks=[colour, shape]", "train.max_steps=2", "train.batch_size=4",
                 "train.progress=false", f"model.path={model_path}", "eval.batch_size=8", "eval.max_new_tokens=4",
                 *[f"method.{k}={v}" for k, v in options.items()]]
    return build_run_config({}, overrides, method=method, seed=0, name=method, runs_dir=str(runs))


# --- the boundary itself --------------------------------------------------------------------------------

def test_unknown_architecture_names_the_known_ones_and_how_to_add_one() -> None:
    model = torch.nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "mystery_vlm"})()
    with pytest.raises(ConfigError, match="mystery_vlm") as error:
        families.language_model(model)
    message = str(error.value)
    for kind in ("llava", "qwen2_vl", "gemma3", "idefics3", "internvl"):
        assert kind in message
    assert "citkit.models.families.register_family(...)" in message


def test_register_family_refuses_a_duplicate_unless_replaced() -> None:
    llava = families.FAMILIES["llava"]
    with pytest.raises(ConfigError, match="already registered"):
        families.register_family(llava)
    assert families.register_family(llava, replace=True) is llava


def test_image_owners_by_token_runs_and_instruction_mask() -> None:
    image = 9
    input_ids = torch.tensor([[1, 9, 9, 2, 9, 9, 3], [1, 2, 9, 9, 3, 0, 0]])
    assert families.image_owners(input_ids, 3, image).tolist() == [0, 0, 1]
    batch = {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
             "labels": torch.tensor([[-100] * 6 + [3], [-100] * 7])}
    keep = families.instruction_mask(batch, torch.tensor([9, 1]))
    assert keep.tolist() == [[False, False, False, True, False, False, False],
                             [False, True, False, False, True, False, False]]


# --- model level: every family, no processor needed -------------------------------------------------------

def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.mark.parametrize("kind", list(TINY_FAMILIES))
def test_model_loads_and_lora_wraps_only_the_language_model(kind: str, tmp_path: Path) -> None:
    model, _ = build_tiny_family(kind, with_processor=False)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    model.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    family = families.family_of(model)
    assert family.model_type == kind and type(model).__name__ == family.model_class
    assert len(families.decoder_layers(model)) == 2
    tower, projector = families.vision_tower(model), families.projector(model)
    model = add_lora(model, AdapterConfig(rank=4))
    wrapped = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert wrapped and all(f".{family.language_model}." in name for name in wrapped)
    assert not any(hasattr(m, "lora_A") for m in tower.modules()) and families.vision_tower(model) is tower
    assert not any(hasattr(m, "lora_A") for m in projector.modules())
    # pooled features from the family's real image processor: one vector per image, whatever the layout
    pixels = dict(tiny_image_processor(kind)(images=_images(3), return_tensors="pt"))
    if family.pixel_images == "slots":  # Idefics3, SmolVLM: (samples, slots, ...), here 3 samples of one image
        pixels = {k: v.reshape(3, 1, *v.shape[2:]) for k, v in pixels.items()}
    if kind == "internvl":  # its tiles per image are read from the image token runs (9 tokens per 48 px tile)
        image = families.image_token_id(model)
        pixels["input_ids"] = torch.tensor([[1] + [image] * 9 + [2]] * 3)
    features = families.pooled_image_features(model, pixels)
    assert features.shape == (3, families.image_feature_size(model))
    assert torch.isfinite(features).all() and not torch.allclose(features[0], features[1])


# --- end to end: load, train two tasks, evaluate, save, reload, same generations -------------------------

@pytest.mark.parametrize("kind", list(TINY_FAMILIES))
def test_two_task_run_then_reloaded_adapter_generates_the_same(kind: str, stream_file: Path, tmp_path: Path,
                                                               saved: dict[str, Path],
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    model_path = _saved(saved, kind, tmp_path_factory)
    processor = load_processor(model_path)
    family = families.FAMILIES[kind]
    assert type(processor).__name__ == family.processor_class
    result = run(_run_config(stream_file, model_path, tmp_path, "lora-ft"))
    assert result.matrix.is_complete
    checkpoint = RunDirectory(result.run_dir)
    trainable, tensors, extra = checkpoint.load_checkpoint(1)
    assert trainable and all(f".{family.language_model}." in name and "lora_" in name for name in trainable)
    assert any(float(t.abs().sum()) > 0 for name, t in trainable.items() if "lora_B" in name)  # it trained

    model = load_model(model_path)
    model.requires_grad_(False)
    method = METHODS.get("lora-ft")(None, AdapterConfig())
    method.remember_base(model)
    model = method.resume(method.attach(model), ["colour", "shape"])
    method.load_trainable_state(model, trainable, "checkpoint task_2")
    method.load_state_dict(tensors)
    method.load_extra_state(extra)
    encoder = SampleEncoder(processor)
    stored = [json.loads(line) for line in (result.run_dir / "predictions" / "row_2.jsonl").read_text().splitlines()]
    for task in ("colour", "shape"):
        samples = read_test(stream_file.parent / task / "test.json", stream_file.parent / task, task)
        # one sample per batch: the run generated padded batches, so this also checks that padding changes nothing
        again = generate(model, [encoder.encode_prompt(s) for s in samples], processor.tokenizer, batch_size=1,
                         max_new_tokens=4, route=lambda batch: method.route(batch, model))
        assert again.predictions == {r["id"]: r["prediction"] for r in stored if r["task"] == task}


def _train_batch(stream_file: Path, processor: object, count: int = 3) -> dict[str, torch.Tensor]:
    """The first `count` colour training samples, encoded and collated as the engine does."""
    samples = read_train(stream_file.parent / "colour" / "train.json", stream_file.parent / "colour", "colour")
    encoder = SampleEncoder(processor)
    return collate([encoder.encode_train(s) for s in samples[:count]], processor.tokenizer.pad_token_id)


@pytest.mark.parametrize("kind", list(TINY_FAMILIES))
def test_batches_carry_the_family_keys_and_routing_features_split_per_image(kind: str, stream_file: Path,
                                                                            saved: dict[str, Path],
                                                                            tmp_path_factory) -> None:
    """The boundary's image count, owners and projector rows agree with what the model's forward sees."""
    model_path = _saved(saved, kind, tmp_path_factory)
    model, processor = load_model(model_path), load_processor(model_path)
    batch = _train_batch(stream_file, processor)
    assert set(families.family_of(model).batch_keys) <= set(batch)
    images = families.count_images(model, batch)
    assert images == 3
    owners = families.image_owners(batch["input_ids"], images, families.image_token_id(model))
    assert owners.tolist() == [0, 1, 2]
    seen: list[torch.Tensor] = []
    hook = families.projector(model).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        loss = model(**batch).loss
    finally:
        hook.remove()
    assert torch.isfinite(loss)
    assert int(families.projector_rows(model, batch).sum()) == seen[0].shape[0]
    assert families.pooled_image_features(model, batch).shape[0] == 3


@pytest.mark.parametrize("kind", list(TINY_FAMILIES))
def test_a_sample_with_two_images_reaches_the_model_as_two_images(kind: str, stream_file: Path,
                                                                  saved: dict[str, Path], tmp_path_factory) -> None:
    """Samples of two and of one image in one batch: images, owners and projector rows as the model sees them.

    A word parts the two images: the tiny word-level tokenizers drop the newline that separates image
    placeholders in real tokenizers, and image_owners finds images by runs of image tokens."""
    model_path = _saved(saved, kind, tmp_path_factory)
    model, processor = load_model(model_path), load_processor(model_path)
    first, second = read_train(stream_file.parent / "colour" / "train.json", stream_file.parent / "colour",
                               "colour")[:2]
    question, answer = first.turns
    both = dataclasses.replace(first, images=first.images + second.images,
                               turns=(Turn("user", question.text.replace("<image>", "<image> and <image>")), answer))
    encoder = SampleEncoder(processor)
    batch = collate([encoder.encode_train(both), encoder.encode_train(second)], processor.tokenizer.pad_token_id)
    images = families.count_images(model, batch)
    assert images == 3
    assert families.image_owners(batch["input_ids"], images, families.image_token_id(model)).tolist() == [0, 0, 1]
    seen: list[torch.Tensor] = []
    hook = families.projector(model).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        assert torch.isfinite(model(**batch).loss)
    finally:
        hook.remove()
    assert int(families.projector_rows(model, batch).sum()) == seen[0].shape[0]
    assert families.pooled_image_features(model, batch).shape[0] == 3
    if kind == "llava_onevision":  # a sample's images go to the processor as that sample's: not tiled, one row each
        assert batch["batch_num_images"].tolist() == [2, 1]
        assert families.projector_rows(model, batch).tolist()[:2] == [1, 1]


@pytest.mark.parametrize("kind", list(TINY_FAMILIES))
def test_expert_projector_sends_each_image_through_its_own_expert(kind: str, stream_file: Path,
                                                                   saved: dict[str, Path], tmp_path_factory) -> None:
    """EProj's per-image routing, checked against each image run alone through its expert (Qwen merges rows)."""
    model_path = _saved(saved, kind, tmp_path_factory)
    model, processor = load_model(model_path), load_processor(model_path)
    batch = _train_batch(stream_file, processor)
    seen: list[torch.Tensor] = []
    hook = families.projector(model).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(**batch)
    finally:
        hook.remove()
    experts = ExpertProjector(families.projector(model))
    for _ in range(2):
        experts.add_expert("base")
    with torch.no_grad():
        for parameter in experts.experts[1].parameters():
            parameter.add_(torch.randn_like(parameter))
    rows = families.projector_rows(model, batch)  # (images,)
    choices = torch.tensor([1, 0, 1])  # expert per image
    experts.routing = choices.repeat_interleave(rows)
    with torch.no_grad():
        routed = experts(seen[0])
        alone = [experts.experts[int(c)](part) for c, part in zip(choices, seen[0].split(rows.tolist()), strict=True)]
    assert torch.equal(routed, torch.cat(alone))
    assert not torch.allclose(alone[0], experts.experts[0](seen[0].split(rows.tolist())[0]))  # the experts differ


# --- the routing methods on every family (a two-task run each, about a second) ----------------------------

ROUTING = {"hide-llava": {"anchor_samples": 8}, "eproj": {"key_steps": 5, "key_samples": 8},
           "moelora": {}, "ewc-tir": {}}


@pytest.mark.parametrize("method", list(ROUTING))
@pytest.mark.parametrize("kind", list(TINY_FAMILIES))
def test_routing_methods_run_on_every_family(kind: str, method: str, stream_file: Path, tmp_path: Path,
                                             saved: dict[str, Path], tmp_path_factory) -> None:
    model_path = _saved(saved, kind, tmp_path_factory)
    result = run(_run_config(stream_file, model_path, tmp_path, method, **ROUTING[method]))
    assert result.matrix.is_complete
    assert (result.run_dir / "checkpoints" / "task_2" / "method.safetensors").is_file()
