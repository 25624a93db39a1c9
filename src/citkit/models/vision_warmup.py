"""Stage 1 of the tiny model's pretraining: teach the vision tower to see each domain's content.

Training the whole tiny LLaVA from scratch on question answering alone learns the image one
attribute at a time, with long flat stretches whose order depends on the seed. A short supervised
stage first makes every patch feature linearly readable (the label of its cell: a shape, a bar's fill,
a digit, a terrain, a pattern) and the CLS feature carry the domain and the image's summary (an object
count, a clock's hour, a pattern's colours); the language model then only has to learn to read them.
The linear heads are thrown away afterwards: only the vision tower keeps what it learned.

Labels come from the drawing (`citkit.data.toy.domains.Picture`), never from a continual task's
answer: the tallest bar, a later hour or a digit sum are not taught here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState
from torch import nn
from transformers.utils import ModelOutput

from citkit.data.toy.domains import DOMAINS, Picture, draw
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.engine.config import TrainConfig, per_process_batch
from citkit.engine.engine import Engine
from citkit.methods.full_finetune import FullFineTune


@lru_cache(maxsize=8)
def label_sets(domains: tuple[str, ...], seed: int = 0, draws: int = 3000) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every cell label and every summary the domains can draw, sorted (found by drawing many pictures)."""
    rng = np.random.default_rng([seed, 11])
    cells, summaries = set(), set()
    for k in range(draws):
        picture = draw(domains[k % len(domains)], rng)
        cells.update(picture.cells)
        summaries.add(f"{picture.domain}: {picture.summary}")
    return tuple(sorted(cells)), tuple(sorted(summaries))


def picture_labels(picture: Picture, domains: tuple[str, ...]) -> dict[str, torch.Tensor]:
    cells, summaries = label_sets(domains)
    image = torch.from_numpy(picture.image).permute(2, 0, 1).float() / 255.0  # (3, H, W)
    return {"pixel_values": (image - 0.5) / 0.5,
            "cells": torch.tensor([cells.index(c) for c in picture.cells]),
            "summary": torch.tensor(summaries.index(f"{picture.domain}: {picture.summary}")),
            "domain": torch.tensor(domains.index(picture.domain))}


def draw_labelled(seed: int, index: int, domains: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Picture `index` of the warm-up (its own generator, so any order and any worker draw the same one)."""
    rng = np.random.default_rng([seed, 7, index])
    return picture_labels(draw(domains[index % len(domains)], rng), domains)


def stack(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class VisionProbe(nn.Module):
    """The vision tower with a linear per-patch cell head and CLS summary and domain heads; loss: their CE sum."""

    def __init__(self, vision_tower: nn.Module, hidden: int, domains: tuple[str, ...]) -> None:
        super().__init__()
        cells, summaries = label_sets(domains)
        self.vision_tower = vision_tower
        self.heads = nn.ModuleDict({"cells": nn.Linear(hidden, len(cells)),
                                    "summary": nn.Linear(hidden, len(summaries)),
                                    "domain": nn.Linear(hidden, len(domains))})

    def forward(self, pixel_values: torch.Tensor, cells: torch.Tensor, summary: torch.Tensor,
                domain: torch.Tensor) -> ModelOutput:
        features = self.vision_tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1]
        cls, patches = features[:, 0], features[:, 1:]  # (batch, hidden), (batch, cells, hidden)
        cell_logits, summary_logits = self.heads["cells"](patches), self.heads["summary"](cls)
        loss = (F.cross_entropy(cell_logits.flatten(0, 1), cells.flatten())
                + F.cross_entropy(summary_logits, summary)
                + F.cross_entropy(self.heads["domain"](cls), domain))
        return ModelOutput(loss=loss, cell_logits=cell_logits, summary_logits=summary_logits)


@dataclass
class VisionWarmupTask:
    """The warm-up as a task of the engine: `size` pictures drawn from `seed`, domains in turn."""

    seed: int
    size: int
    domains: tuple[str, ...] = DOMAINS
    name: str = "vision-warmup"
    index: int = 0

    @property
    def train(self) -> list[int]:
        return list(range(self.size))

    def source(self, samples: list[int]) -> BatchSource:
        return BatchSource(LazyDataset(samples, lambda i: draw_labelled(self.seed, i, self.domains)), stack)


def warm_up_vision(vision_tower: nn.Module, hidden: int, steps: int, batch_size: int, lr: float, seed: int,
                   domains: tuple[str, ...] = DOMAINS) -> dict[str, float]:
    """Train `vision_tower` with cell, summary and domain heads through the engine; returns held-out accuracies
    (0-1) on 300 pictures: `cells` (every cell of a picture right) and `summary`. Each step sees `batch_size`
    pictures, split over the launch's processes when there are several."""
    probe = VisionProbe(vision_tower, hidden, domains)
    share = per_process_batch(batch_size, PartialState(cpu=True).num_processes)
    engine = Engine(TrainConfig(max_steps=steps, batch_size=share, lr=lr, warmup_ratio=0.05, weight_decay=0.01,
                                max_grad_norm=None, progress=False), cpu=True)
    # The probe reads the last hidden states, never the pooled output: the tower's post_layernorm gets no
    # gradient (an optimizer skips it either way; DDP refuses a trainable parameter without a gradient).
    method = FullFineTune(frozen=("post_layernorm",))
    probe = engine.attach(method, probe)
    probe, _ = engine.fit_task(probe, method, VisionWarmupTask(seed, steps * batch_size, domains), seed=seed)
    held_out = stack([draw_labelled(seed + 1_000_003, i, domains) for i in range(300)])
    with torch.no_grad():
        out = probe(**held_out)
    cells_right = (out.cell_logits.argmax(-1) == held_out["cells"]).all(-1).float().mean()
    summary_right = (out.summary_logits.argmax(-1) == held_out["summary"]).float().mean()
    vision_tower.requires_grad_(False)
    return {"cells": float(cells_right), "summary": float(summary_right)}
