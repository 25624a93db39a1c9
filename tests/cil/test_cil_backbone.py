"""ViT/DeiT from a local folder via from_pretrained, LoRA targets, the expanding head and its two kinds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DeiTConfig, DeiTModel

from citkit.cil.backbone import BackboneConfig, ViTAdapterConfig, add_lora, build_classifier, load_backbone
from citkit.errors import ConfigError, ModelLoadError


def test_a_saved_vit_loads_back_with_its_weights(random_vit: Path) -> None:
    model, transform = load_backbone(str(random_vit))
    again, _ = load_backbone(str(random_vit))
    assert type(model).__name__ == "ViTModel" and transform.size == 16
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_deit_checkpoint_loads_and_reads_its_preprocessor(tmp_path: Path) -> None:
    config = DeiTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        image_size=16, patch_size=8)
    DeiTModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text('{"image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 2]}')
    model, transform = load_backbone(str(tmp_path))
    assert type(model).__name__ == "DeiTModel"
    assert transform.mean == (0.1, 0.2, 0.3) and transform.std == (1, 1, 2)
    classifier, _ = build_classifier(BackboneConfig(path=str(tmp_path)))
    classifier.head.add_classes(3)
    assert classifier(pixel_values=torch.zeros(2, 3, 16, 16)).logits.shape == (2, 3)


def test_a_missing_model_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot load a ViT backbone"):
        load_backbone(str(tmp_path / "none"))


def test_lora_targets_only_the_named_layers_and_unknown_names_are_refused(random_vit: Path) -> None:
    classifier, _ = build_classifier(BackboneConfig(path=str(random_vit)))
    add_lora(classifier, ViTAdapterConfig(rank=2))
    adapted = {n.rsplit(".", 3)[0].rsplit(".", 1)[-1] for n, _ in classifier.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "v_proj"}
    with pytest.raises(ConfigError, match=r"\['query'\] are not linear layers"):
        add_lora(classifier, ViTAdapterConfig(target_modules=("query",)), name="other")


def test_the_head_grows_per_task_and_the_cosine_kind_is_scaled_cosine(random_vit: Path) -> None:
    linear, _ = build_classifier(BackboneConfig(path=str(random_vit)))
    with pytest.raises(ConfigError, match="no class yet"):
        linear(pixel_values=torch.zeros(1, 3, 16, 16))
    linear.head.add_classes(2)
    linear.head.add_classes(3)
    assert linear.head.num_classes == 5 and linear(pixel_values=torch.zeros(2, 3, 16, 16)).logits.shape == (2, 5)
    cosine, _ = build_classifier(BackboneConfig(path=str(random_vit), classifier="cosine", cosine_scale=4.0))
    cosine.head.add_classes(2)
    features = torch.randn(3, 32)
    expected = 4.0 * torch.nn.functional.cosine_similarity(features[:, None], cosine.head.weight()[None], dim=-1)
    torch.testing.assert_close(cosine.head(features), expected)
    with pytest.raises(ConfigError, match="classifier"):
        BackboneConfig(classifier="mlp")  # type: ignore[arg-type]


def test_adapter_rank_alpha_and_dropout_reach_peft(random_vit: Path) -> None:
    classifier, _ = build_classifier(BackboneConfig(path=str(random_vit)))
    add_lora(classifier, ViTAdapterConfig(rank=4, alpha=12.0, dropout=0.25))
    from citkit.cil.backbone import lora_layers

    layer = lora_layers(classifier)[0][1]
    assert layer.lora_A["default"].weight.shape == (4, 32) and layer.scaling["default"] == 3.0
    assert layer.lora_dropout["default"].p == 0.25
    add_lora(classifier, ViTAdapterConfig(rank=4, alpha=12.0), name="wide", rank=8)  # same scaling at another rank
    assert layer.lora_A["wide"].weight.shape == (8, 32) and layer.scaling["wide"] == 3.0
    with pytest.raises(ConfigError, match="adapter.rank"):
        ViTAdapterConfig(rank=0)
