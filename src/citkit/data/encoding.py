"""From samples to model inputs through the processor's chat template.

Training features carry `labels` that are -100 everywhere except on the assistant turns (the answer
tokens and the end-of-turn token that teaches the model to stop). Prompts for generation end with
the template's generation prompt. Samples are encoded once per task and cached as token id lists and
pixel tensors; batches are padded on the right for training and on the left for generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from citkit.data.llava_format import IMAGE_TOKEN
from citkit.data.samples import Sample, Turn
from citkit.errors import DataFormatError

IGNORE_INDEX = -100


def to_messages(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """Hugging Face multimodal chat messages: each `<image>` placeholder becomes an image part."""
    messages = []
    for turn in turns:
        content: list[dict[str, str]] = []
        pieces = turn.text.split(IMAGE_TOKEN)
        for k, piece in enumerate(pieces):
            if k > 0:
                content.append({"type": "image"})
            piece = piece.strip()
            if piece:
                content.append({"type": "text", "text": piece})
        messages.append({"role": turn.role, "content": content})
    return messages


def load_images(sample: Sample) -> list[Image.Image]:
    images = []
    for path in sample.images:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise DataFormatError(f"sample {sample.id!r} of task {sample.task!r}: unreadable image {path}: {error}") from None
    return images


@dataclass
class Encoded:
    """One encoded sample: token ids, labels (training only) and the pixel values of its images."""

    id: str
    input_ids: list[int]
    labels: list[int] | None
    pixel_values: torch.Tensor | None  # (num_images, channels, height, width)


class SampleEncoder:
    """Encodes samples for one processor; works for any LLaVA-style processor with a chat template."""

    def __init__(self, processor: Any, max_length: int | None = None) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = max_length
        self.image_token_id = getattr(processor, "image_token_id", None)

    def render(self, turns: Sequence[Turn], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(to_messages(turns), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _tokenize(self, text: str, images: list[Image.Image]) -> tuple[list[int], torch.Tensor | None]:
        if images:
            out = self.processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
            return out["input_ids"][0].tolist(), out["pixel_values"]
        out = self.tokenizer([text], add_special_tokens=False)
        return list(out["input_ids"][0]), None

    def _prefix_length(self, text: str, tokens_per_image: int) -> int:
        """Token count of a rendered prefix, with each placeholder expanded as the processor does."""
        expanded = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * tokens_per_image)
        return len(self.tokenizer([expanded], add_special_tokens=False)["input_ids"][0])

    def encode_train(self, sample: Sample) -> Encoded:
        images = load_images(sample)
        full = self.render(sample.turns, add_generation_prompt=False)
        input_ids, pixels = self._tokenize(full, images)
        per_image = 0
        if images and self.image_token_id is not None:
            per_image = int(np.sum(np.asarray(input_ids) == self.image_token_id)) // len(images)
        labels = [IGNORE_INDEX] * len(input_ids)
        for k, turn in enumerate(sample.turns):
            if turn.role != "assistant":
                continue
            start = self._prefix_length(self.render(sample.turns[:k], add_generation_prompt=True), per_image)
            end = self._prefix_length(self.render(sample.turns[: k + 1], add_generation_prompt=False), per_image)
            labels[start:end] = input_ids[start:end]
        if self.max_length is not None:
            input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise DataFormatError(f"sample {sample.id!r} of task {sample.task!r}: no answer token survives "
                                  f"encoding (max_length={self.max_length}); raise max_length")
        return Encoded(sample.id, input_ids, labels, pixels)

    def encode_prompt(self, sample: Sample) -> Encoded:
        images = load_images(sample)
        prompt = self.render([t for t in sample.turns], add_generation_prompt=True)
        input_ids, pixels = self._tokenize(prompt, images)
        return Encoded(sample.id, input_ids, None, pixels)


def collate(batch: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a list of encoded samples into a model batch (labels padded with -100)."""
    length = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)  # (batch, seq)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        span = slice(length - n, length) if padding_side == "left" else slice(0, n)
        ids[row, span] = torch.tensor(item.input_ids)
        mask[row, span] = 1
        if item.labels is not None:
            labels[row, span] = torch.tensor(item.labels)
    out = {"input_ids": ids, "attention_mask": mask}
    if any(e.labels is not None for e in batch):
        out["labels"] = labels
    pixels = [e.pixel_values for e in batch if e.pixel_values is not None]
    if pixels:
        out["pixel_values"] = torch.cat(pixels)  # (total_images, channels, height, width)
    return out
