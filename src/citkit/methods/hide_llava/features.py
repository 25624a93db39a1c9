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

from citkit.errors import ConfigError, ModelLoadError
from citkit.models.families import family_of, mean_instruction_embedding, pooled_image_features


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
    def images(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:  # -> (images, vision_hidden)
        return pooled_image_features(model, batch, self.image_feature)

    @torch.no_grad()
    def texts(self, model: nn.Module, batch: dict[str, Tensor], keep: Tensor) -> Tensor:  # -> (batch, hidden)
        return mean_instruction_embedding(model, batch, keep)


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
    def images(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        pixel_values = batch["pixel_values"]
        if pixel_values.dim() != 4:
            raise ConfigError(f"hide-llava: the CLIP image features need one (channels, height, width) image per "
                              f"row of pixel_values; {family_of(model).model_type} batches hold "
                              f"{tuple(pixel_values.shape)}; use anchor_encoder=model")
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
