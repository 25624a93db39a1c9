"""The class-incremental model: a Hugging Face ViT/DeiT backbone, LoRA on it via peft, an expanding head.

The backbone is any `ViTModel` / `DeiTModel` checkpoint (a local folder or a hub id in the local
cache), or `tiny`: citkit's packaged tiny ViT (`citkit.cil.pretrain`). The feature of an image is the
final [CLS] token (after the last layer norm). The head grows by one linear block per task; its
columns are global labels in stream order, so the logits always cover every class seen so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, DeiTModel, PreTrainedModel, ViTConfig, ViTModel
from transformers.utils import ModelOutput

from citkit.cil.stream import ImageTransform
from citkit.errors import ConfigError, ModelLoadError
from citkit.models.lora import check_adapter_settings

TINY = "tiny"


def packaged_tiny_vit() -> Path:
    """Folder of the tiny ViT shipped with citkit (rebuilt by `citkit cil pretrain`)."""
    return Path(__file__).resolve().parent.parent / "assets" / "tiny-vit"


@dataclass(frozen=True)
class ViTAdapterConfig:
    """LoRA on the backbone's attention (DESIRE spec: q and v of every block, rank 8)."""

    rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scaling alpha / r)."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    target_modules: tuple[str, ...] = field(default=("q_proj", "v_proj"), metadata={"help": (
        "Names of the backbone's linear layers to adapt (transformers 5 ViT/DeiT: q_proj, k_proj, v_proj, o_proj, "
        "fc1, fc2).")})

    def __post_init__(self) -> None:
        check_adapter_settings(self.rank, self.dropout, self.target_modules)

    def lora_config(self, rank: int | None = None) -> LoraConfig:
        return LoraConfig(r=rank or self.rank, lora_alpha=self.alpha * (rank or self.rank) / self.rank,
                          lora_dropout=self.dropout, target_modules=list(self.target_modules))


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone, and the kind of classifier on top."""

    path: str = field(default=TINY, metadata={"help": (
        "'tiny' (the packaged tiny ViT pretrained on classes no CIL stream uses), a local ViT/DeiT folder, or a "
        "hub id already in the local cache.")})
    classifier: Literal["linear", "cosine"] = field(default="linear", metadata={"help": (
        "'linear': W f + b; 'cosine': scale * cos(W_c, f) (no bias), as in PILOT's SimpleCIL.")})
    cosine_scale: float = field(default=16.0, metadata={"help": "Logit scale of the cosine classifier."})

    def __post_init__(self) -> None:
        if self.classifier not in ("linear", "cosine"):
            raise ConfigError(f"model.classifier {self.classifier!r}: use 'linear' or 'cosine'")
        if self.cosine_scale <= 0:
            raise ConfigError(f"model.cosine_scale must be > 0, got {self.cosine_scale}")


@dataclass(frozen=True)
class TinyViTConfig:
    """Architecture of the tiny ViT (nanoGPT-sized: 32 px images, 4 x 4 patches -> 64 tokens + [CLS])."""

    hidden: int = field(default=64, metadata={"help": "Hidden size."})
    layers: int = field(default=4, metadata={"help": "Transformer blocks."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    mlp: int = field(default=128, metadata={"help": "MLP width."})
    image_size: int = field(default=32, metadata={"help": "Input image side in pixels."})
    patch_size: int = field(default=4, metadata={"help": "Patch side in pixels."})

    def vit_config(self) -> ViTConfig:
        return ViTConfig(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                         intermediate_size=self.mlp, image_size=self.image_size, patch_size=self.patch_size,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def build_tiny_vit(config: TinyViTConfig) -> ViTModel:
    """A randomly initialised tiny ViT (seed it first)."""
    return ViTModel(config.vit_config(), add_pooling_layer=False)


def load_backbone(path: str) -> tuple[PreTrainedModel, ImageTransform]:
    """A ViT/DeiT backbone (no pooler, no head) and the transform its images need."""
    location = str(packaged_tiny_vit()) if path == TINY else path
    if path == TINY and not (packaged_tiny_vit() / "config.json").is_file():
        raise ModelLoadError(f"the packaged tiny ViT is missing at {packaged_tiny_vit()}; run `citkit cil pretrain`")
    try:
        config = AutoConfig.from_pretrained(location)
        if config.model_type == "vit":
            model = ViTModel.from_pretrained(location, add_pooling_layer=False)
        elif config.model_type == "deit":
            model = DeiTModel.from_pretrained(location, add_pooling_layer=False)
        else:
            model = AutoModel.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load a ViT backbone from {location!r}: {str(error).splitlines()[0]}") from error
    model.eval()
    return model, _transform_for(location, int(getattr(config, "image_size", 224)))


def _transform_for(location: str, size: int) -> ImageTransform:
    """Mean and std from the checkpoint's preprocessor_config.json when there is one, else 0.5."""
    file = Path(location) / "preprocessor_config.json"
    if not file.is_file():
        try:
            from transformers.utils import cached_file

            file = Path(cached_file(location, "preprocessor_config.json"))  # type: ignore[arg-type]
        except (OSError, ValueError, TypeError):
            return ImageTransform(size)
    data = json.loads(file.read_text())
    return ImageTransform(size, tuple(data.get("image_mean", (0.5,) * 3)), tuple(data.get("image_std", (0.5,) * 3)))


class ExpandingHead(nn.Module):
    """One linear block per task; logits (batch, seen classes) in stream order."""

    def __init__(self, hidden: int, kind: str = "linear", scale: float = 16.0) -> None:
        super().__init__()
        self.hidden, self.kind, self.scale = hidden, kind, scale
        self.parts = nn.ModuleList()

    @property
    def num_classes(self) -> int:
        return sum(part.out_features for part in self.parts)

    def add_classes(self, count: int) -> None:
        device = self.parts[0].weight.device if len(self.parts) else None
        self.parts.append(nn.Linear(self.hidden, count, bias=self.kind == "linear", device=device))

    def weight(self) -> Tensor:
        return torch.cat([part.weight for part in self.parts])  # (classes, hidden)

    def forward(self, features: Tensor) -> Tensor:
        if not len(self.parts):
            raise ConfigError("the classifier has no class yet; add a task's classes before predicting")
        if self.kind == "cosine":
            return self.scale * F.normalize(features, dim=-1) @ F.normalize(self.weight(), dim=-1).T
        return torch.cat([part(features) for part in self.parts], dim=-1)


class ViTClassifier(nn.Module):
    """Backbone (possibly peft-wrapped) + expanding head. `forward(pixel_values, labels)` returns logits over
    every seen class, the pooled features and, with labels, the cross-entropy over every seen class."""

    def __init__(self, backbone: nn.Module, hidden: int, kind: str = "linear", scale: float = 16.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ExpandingHead(hidden, kind, scale)

    def features(self, pixel_values: Tensor) -> Tensor:
        return self.backbone(pixel_values=pixel_values).last_hidden_state[:, 0]  # (batch, hidden): [CLS]

    def forward(self, pixel_values: Tensor, labels: Tensor | None = None) -> ModelOutput:
        features = self.features(pixel_values)
        logits = self.head(features)  # (batch, seen classes)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, features=features)


def build_classifier(config: BackboneConfig, classifier: str | None = None) -> tuple[ViTClassifier, ImageTransform]:
    backbone, transform = load_backbone(config.path)
    backbone.requires_grad_(False)
    return ViTClassifier(backbone, int(backbone.config.hidden_size), classifier or config.classifier,
                         config.cosine_scale), transform


def add_lora(model: ViTClassifier, adapter: ViTAdapterConfig, name: str = "default", rank: int | None = None) -> None:
    """Add a LoRA adapter `name` to the backbone (wrapping it in a peft model the first time)."""
    base = model.backbone.get_base_model() if isinstance(model.backbone, PeftModel) else model.backbone
    from peft.tuners.lora import LoraLayer

    linear = {n.rsplit(".", 1)[-1] for n, m in base.named_modules()
              if isinstance(m, (nn.Linear, LoraLayer)) and ".lora_" not in n and not n.endswith("base_layer")}
    missing = [t for t in adapter.target_modules if t not in linear]
    if missing:
        raise ConfigError(f"adapter.target_modules {missing} are not linear layers of {type(base).__name__}; "
                          f"it has {sorted(linear)}")
    if isinstance(model.backbone, PeftModel):
        model.backbone.add_adapter(name, adapter.lora_config(rank))
    else:
        model.backbone = get_peft_model(model.backbone, adapter.lora_config(rank), adapter_name=name)


def lora_layers(model: ViTClassifier) -> list[tuple[str, Any]]:
    """(module name, peft LoraLayer) for every adapted linear layer, in model order."""
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.backbone.named_modules() if isinstance(m, LoraLayer)]


def set_active_adapters(model: ViTClassifier, active: list[str], trainable: list[str]) -> None:
    """Which adapters take part in the forward pass, and which of them train."""
    backbone = model.backbone
    if not isinstance(backbone, PeftModel):
        raise ConfigError("the backbone has no LoRA adapter; the method's attach() adds one")
    backbone.base_model.set_adapter(list(active))
    names = list(backbone.peft_config)
    frozen = [n for n in names if n not in trainable]
    if frozen:
        backbone.base_model.set_requires_grad(frozen, requires_grad=False)
    if trainable:
        backbone.base_model.set_requires_grad(list(trainable), requires_grad=True)
