"""Frozen features that place a sample among the tasks: one image vector and one instruction vector.

'model' source (default): the model's own vision tower (pooled CLS output, or the mean of its patch
states) and the base LLM's input embeddings mean-pooled over the instruction tokens. Both are
untouched by training (the vision tower and the embeddings are never adapted), so anchors computed
after task 1 stay comparable with test features after task 6.

'clip' source (the authors' choice): a CLIP dual encoder from a local folder; image_embeds of the
images (the pixel values the model's processor made, resized to CLIP's input size) and the text
pooler output of the instruction, decoded back to text with the model's tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from citkit.data.encoding import IGNORE_INDEX
from citkit.errors import ConfigError, ModelLoadError


def vision_tower(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", model)
    tower = getattr(inner, "vision_tower", None) or getattr(inner, "visual", None)
    if tower is None:
        raise ConfigError(f"hide-llava: {type(model).__name__} has no vision tower (model.vision_tower) to take "
                          "image features from; use anchor_encoder=clip")
    return tower


def image_token_id(model: nn.Module) -> int:
    value = getattr(model.config, "image_token_id", getattr(model.config, "image_token_index", None))
    if value is None:
        raise ConfigError("hide-llava: the model config names no image token (image_token_id)")
    return int(value)


def instruction_mask(batch: dict[str, Tensor], skip_ids: Tensor) -> Tensor:
    """(batch, seq) True on instruction tokens: attended, not template/special/image, not an answer token."""
    input_ids = batch["input_ids"]
    keep = batch["attention_mask"].bool() & ~torch.isin(input_ids, skip_ids.to(input_ids.device))
    if "labels" in batch:
        keep &= batch["labels"] == IGNORE_INDEX
    return keep


def image_owners(input_ids: Tensor, num_images: int, image_token: int) -> Tensor:
    """(num_images,) the sample each image of the batch belongs to (images come in sample order)."""
    per_sample = (input_ids == image_token).sum(1)  # (batch,) image tokens per sample
    total = int(per_sample.sum())
    per_image = total // max(1, num_images)
    if num_images == 0 or per_image == 0 or per_image * num_images != total:
        raise ConfigError(f"hide-llava: {total} image tokens do not split evenly over {num_images} images")
    return torch.repeat_interleave(torch.arange(input_ids.shape[0], device=input_ids.device), per_sample // per_image)


def pool_images(features: Tensor, owners: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Mean image feature per sample (batch, dim) and whether the sample has an image (batch,)."""
    sums = features.new_zeros(batch_size, features.shape[1]).index_add_(0, owners, features)
    counts = torch.bincount(owners, minlength=batch_size).to(features.dtype)
    return sums / counts.clamp(min=1).unsqueeze(1), counts > 0


class ModelFeatures:
    """Image and instruction features from the model being tuned (its frozen parts only)."""

    def __init__(self, image_feature: str) -> None:
        self.image_feature = image_feature

    @torch.no_grad()
    def images(self, model: nn.Module, pixel_values: Tensor) -> Tensor:  # -> (images, vision_hidden)
        tower = vision_tower(model)
        out = tower(pixel_values.to(next(tower.parameters()).dtype), return_dict=True)
        if self.image_feature == "pooled" and getattr(out, "pooler_output", None) is not None:
            return out.pooler_output.float()
        return out.last_hidden_state.float().mean(1)

    @torch.no_grad()
    def texts(self, model: nn.Module, batch: dict[str, Tensor], keep: Tensor) -> Tensor:  # -> (batch, hidden)
        embeds = model.get_input_embeddings()(batch["input_ids"]).float()  # (batch, seq, hidden)
        weights = keep.unsqueeze(-1).float()
        return (embeds * weights).sum(1) / weights.sum(1).clamp(min=1)


class ClipFeatures:
    """Image and instruction features from a frozen CLIP dual encoder kept next to the model."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer, CLIPModel

        if not Path(path).is_dir():
            raise ModelLoadError(f"hide-llava: clip_path {path!r} is not a folder; pass a CLIP model saved with "
                                 "save_pretrained (CLIPModel and its tokenizer)")
        try:
            self.clip = CLIPModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"hide-llava: cannot load CLIP from {path}: {str(error).splitlines()[0]}") from None
        self.model_tokenizer: Any = None  # the tuned model's tokenizer, to turn instruction ids back into text

    @torch.no_grad()
    def images(self, model: nn.Module, pixel_values: Tensor) -> Tensor:
        clip = self.clip.to(pixel_values.device)
        size = clip.config.vision_config.image_size
        pixels = F.interpolate(pixel_values.float(), size=(size, size), mode="bilinear", align_corners=False)
        return clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output).float()

    @torch.no_grad()
    def texts(self, model: nn.Module, batch: dict[str, Tensor], keep: Tensor) -> Tensor:
        if self.model_tokenizer is None:
            raise ConfigError("hide-llava: the CLIP text features need the model's tokenizer; it is taken from "
                              "the first task's data, so train a task before routing")
        words = [self.model_tokenizer.decode(ids[mask].tolist(), skip_special_tokens=True)
                 for ids, mask in zip(batch["input_ids"], keep, strict=True)]
        tokens = self.tokenizer(words, padding=True, truncation=True, return_tensors="pt")
        clip = self.clip.to(batch["input_ids"].device)
        tokens = {k: v.to(batch["input_ids"].device) for k, v in tokens.items()}
        return clip.text_model(**tokens).pooler_output.float()
