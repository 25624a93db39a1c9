"""From samples to model inputs through the processor's chat template.

Training features carry `labels` that are -100 everywhere except on the assistant turns (the answer
tokens and the end-of-turn token that teaches the model to stop). Prompts for generation end with
the template's generation prompt. Samples are encoded once per task and cached as token id lists and
pixel tensors; batches are padded on the right for training and on the left for generation.

Whatever else the processor returns travels with the sample, so every architecture gets what its
forward pass needs (Qwen-VL's `image_grid_thw`, LLaVA-NeXT's `image_sizes`, Idefics3's
`pixel_attention_mask`, Gemma 3's `token_type_ids`): outputs aligned with the tokens are kept as id
lists and padded like `input_ids`; the others are concatenated over the batch's samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
            raise DataFormatError(f"sample {sample.id!r} of task {sample.task!r}: unreadable image {path}: "
                                  f"{error}") from None
    return images


@dataclass
class Encoded:
    """One encoded sample: token ids, labels (training only), pixel values and other processor outputs.

    Attributes:
        pixel_values: as the processor returns them; for LLaVA (num_images, channels, height, width).
        token_extras: processor outputs with one value per token (e.g. token_type_ids), padded with 0.
        extras: other processor outputs (e.g. image_grid_thw (num_images, 3)), concatenated over samples
            along the first dimension; other dimensions are zero-padded to the batch's largest.
    """

    id: str
    input_ids: list[int]
    labels: list[int] | None
    pixel_values: torch.Tensor | None
    token_extras: dict[str, list[int]] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


_TEXT_KEYS = ("input_ids", "attention_mask")


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

    def _tokenize(self, text: str, images: list[Image.Image]) -> Encoded:
        if not images:
            out = self.tokenizer([text], add_special_tokens=False)
            return Encoded("", list(out["input_ids"][0]), None, None)
        # one list of images per text: processors batch that way, and LLaVA-OneVision reads it to treat a
        # sample of several images as multi-image (not tiled), as it was trained; a flat list would tile each
        out = self.processor(text=[text], images=[images], return_tensors="pt", add_special_tokens=False)
        input_ids = out["input_ids"][0].tolist()
        encoded = Encoded("", input_ids, None, out.get("pixel_values"))
        for key, value in out.items():
            if key in _TEXT_KEYS or key == "pixel_values" or not isinstance(value, torch.Tensor):
                continue
            if value.dim() == 2 and value.shape == (1, len(input_ids)):  # one value per token
                encoded.token_extras[key] = value[0].tolist()
            else:
                encoded.extras[key] = value
        return encoded

    def _prefix_length(self, text: str, images: list[Image.Image]) -> int:
        """Token count of a rendered prefix holding `images`, with their placeholders expanded as the
        processor expands them (the processor runs on the prefix itself, so any expansion is right)."""
        if not images:
            return len(self.tokenizer([text], add_special_tokens=False)["input_ids"][0])
        return len(self._tokenize(text, images).input_ids)

    def encode_train(self, sample: Sample) -> Encoded:
        images = load_images(sample)
        full = self.render(sample.turns, add_generation_prompt=False)
        encoded = self._tokenize(full, images)
        input_ids = encoded.input_ids
        labels = [IGNORE_INDEX] * len(input_ids)
        for k, turn in enumerate(sample.turns):
            if turn.role != "assistant":
                continue
            shown = images[:sum(t.text.count(IMAGE_TOKEN) for t in sample.turns[:k])]  # images before the answer
            start = self._prefix_length(self.render(sample.turns[:k], add_generation_prompt=True), shown)
            end = self._prefix_length(self.render(sample.turns[: k + 1], add_generation_prompt=False), shown)
            labels[start:end] = input_ids[start:end]
        if self.max_length is not None:
            input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
            encoded.token_extras = {k: v[: self.max_length] for k, v in encoded.token_extras.items()}
        if all(label == IGNORE_INDEX for label in labels):
            raise DataFormatError(f"sample {sample.id!r} of task {sample.task!r}: no answer token survives "
                                  f"encoding (max_length={self.max_length}); raise max_length")
        return Encoded(sample.id, input_ids, labels, encoded.pixel_values, encoded.token_extras, encoded.extras)

    def encode_prompt(self, sample: Sample) -> Encoded:
        images = load_images(sample)
        prompt = self.render([t for t in sample.turns], add_generation_prompt=True)
        encoded = self._tokenize(prompt, images)
        encoded.id = sample.id
        return encoded


def _concatenate(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0, zero-padding every other dimension to the largest (e.g. tile counts)."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    padded = []
    for tensor in tensors:
        pads = [p for d in reversed(range(1, tensor.dim())) for p in (0, shape[d - 1] - tensor.shape[d])]
        padded.append(torch.nn.functional.pad(tensor, pads) if any(pads) else tensor)
    return torch.cat(padded)


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
    for key in dict.fromkeys(k for e in batch for k in e.token_extras):
        values = torch.zeros((len(batch), length), dtype=torch.long)  # (batch, seq), 0 where padded or absent
        for row, item in enumerate(batch):
            if key in item.token_extras:
                n = len(item.token_extras[key])
                values[row, slice(length - n, length) if padding_side == "left" else slice(0, n)] = torch.tensor(
                    item.token_extras[key])
        out[key] = values
    pixels = [e.pixel_values for e in batch if e.pixel_values is not None]
    if pixels:
        out["pixel_values"] = _concatenate(pixels)  # LLaVA: (total_images, channels, height, width)
    for key in dict.fromkeys(k for e in batch for k in e.extras):
        out[key] = _concatenate([e.extras[key] for e in batch if key in e.extras])
    return out
