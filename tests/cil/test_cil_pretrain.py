"""The tiny ViT's build: bit-identical from its seed, gated, and the packaged asset is what the recipe gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citkit.cil.backbone import TinyViTConfig, load_backbone, packaged_tiny_vit
from citkit.cil.images import PRETRAIN_CLASSES
from citkit.cil.pretrain import ViTPretrainConfig, pretrain_tiny_vit
from citkit.errors import CitkitError

SMALL = ViTPretrainConfig(model=TinyViTConfig(hidden=16, layers=1, heads=2, mlp=32, image_size=16, patch_size=8),
                          train_per_class=2, test_per_class=1, epochs=1, quality_gate=0.0)


def test_two_builds_from_the_same_seed_are_bit_identical(tmp_path: Path) -> None:
    pretrain_tiny_vit(SMALL, tmp_path / "a", progress=False)
    pretrain_tiny_vit(SMALL, tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    quality = json.loads((tmp_path / "a" / "quality.json").read_text())
    assert quality["pretraining_classes"] == [c.name for c in PRETRAIN_CLASSES]
    load_backbone(str(tmp_path / "a"))  # loads back through from_pretrained


def test_a_model_below_the_gate_is_not_saved(tmp_path: Path) -> None:
    from dataclasses import replace

    with pytest.raises(CitkitError, match="below the gate 101.0; nothing was saved"):
        pretrain_tiny_vit(replace(SMALL, quality_gate=101.0), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_packaged_tiny_vit_is_pretrained_and_gated() -> None:
    quality = json.loads((packaged_tiny_vit() / "quality.json").read_text())
    assert quality["held_out_accuracy"] >= quality["quality_gate"] >= 75.0
    assert quality["recipe"] == json.loads(json.dumps(ViTPretrainConfig().__dict__, default=lambda o: o.__dict__))
    model, transform = load_backbone("tiny")
    assert model.config.hidden_size == 64 and transform.size == 32


@pytest.mark.slow
def test_rebuilding_the_recipe_gives_the_packaged_weights(tmp_path: Path) -> None:
    pretrain_tiny_vit(ViTPretrainConfig(), tmp_path / "tiny-vit", progress=False)
    assert (tmp_path / "tiny-vit" / "model.safetensors").read_bytes() == \
        (packaged_tiny_vit() / "model.safetensors").read_bytes()
