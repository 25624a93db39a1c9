"""Batched greedy generation with left padding and the KV cache.

Samples are sorted by prompt length so that batches hold similar lengths (less padding), generated
in batches, and returned in the original order keyed by sample id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from citkit.data.encoding import Encoded, collate


@dataclass
class Generation:
    """Predictions of one call, by sample id, with the time spent generating."""

    predictions: dict[str, str]
    seconds: float


@torch.no_grad()
def generate(model: torch.nn.Module, encoded: Sequence[Encoded], tokenizer: object, batch_size: int,
             max_new_tokens: int,
             route: Callable[[dict[str, torch.Tensor]], AbstractContextManager[None]] | None = None,
             device: torch.device | None = None) -> Generation:
    """Greedy decoding of `encoded` prompts; `route(batch)` gives the context each batch runs in."""
    pad_id = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]
    device = device or next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    predictions: dict[str, str] = {}
    model.eval()
    start = time.perf_counter()
    for begin in range(0, len(order), batch_size):
        chunk = [encoded[i] for i in order[begin:begin + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id, "left").items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(next(model.parameters()).dtype)
        context = route(batch) if route is not None else None
        if context is None:
            out = _greedy(model, batch, max_new_tokens, pad_id)
        else:
            with context:
                out = _greedy(model, batch, max_new_tokens, pad_id)
        new_tokens = out[:, batch["input_ids"].shape[1]:]  # (batch, new)
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)  # type: ignore[attr-defined]
        for item, text in zip(chunk, texts, strict=True):
            predictions[item.id] = text.strip()
    return Generation(predictions, time.perf_counter() - start)


def _greedy(model: torch.nn.Module, batch: dict[str, torch.Tensor], max_new_tokens: int, pad_id: int) -> torch.Tensor:
    return model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                          use_cache=True)
