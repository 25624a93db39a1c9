"""Stage 1 of the tiny model's pretraining: teach the vision tower to see cells and counts.

Training the whole tiny LLaVA from scratch on question answering alone learns the image one
attribute at a time, with long flat stretches whose order depends on the seed. A short supervised
stage first makes every patch feature linearly readable (the colour and shape of its cell) and the
CLS feature carry the object count; the language model then only has to learn to read them. The
linear heads are thrown away afterwards: only the vision tower keeps what it learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from citkit.data.toy.scenes import BACKGROUNDS, COLOURS, GRID, SHAPES, random_scene, render
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.methods.full_finetune import FullFineTune

COLOUR_CLASSES = ["none", *COLOURS]
SHAPE_CLASSES = ["none", *SHAPES]
MAX_OBJECTS = 6


def draw_scene_labels(seed: int, index: int) -> dict[str, torch.Tensor]:
    """Scene `index` of the warm-up (its own generator, so any order and any worker draw the same scene)."""
    rng = np.random.default_rng([seed, 7, index])
    scene = random_scene(rng, int(rng.integers(0, MAX_OBJECTS + 1)), int(rng.integers(len(BACKGROUNDS))))
    image = torch.from_numpy(render(scene)).permute(2, 0, 1).float() / 255.0  # (3, H, W)
    cells = [scene.at(c) for c in range(GRID * GRID)]
    return {"pixel_values": (image - 0.5) / 0.5,
            "colours": torch.tensor([COLOUR_CLASSES.index(o.colour) if o else 0 for o in cells]),
            "shapes": torch.tensor([SHAPE_CLASSES.index(o.shape) if o else 0 for o in cells]),
            "counts": torch.tensor(len(scene.objects))}


def stack(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class VisionProbe(nn.Module):
    """The vision tower with linear per-cell (colour, shape) and count heads; its loss is their CE sum."""

    def __init__(self, vision_tower: nn.Module, hidden: int) -> None:
        super().__init__()
        self.vision_tower = vision_tower
        self.heads = nn.ModuleDict({"colour": nn.Linear(hidden, len(COLOUR_CLASSES)),
                                    "shape": nn.Linear(hidden, len(SHAPE_CLASSES)),
                                    "count": nn.Linear(hidden, MAX_OBJECTS + 1)})

    def forward(self, pixel_values: torch.Tensor, colours: torch.Tensor, shapes: torch.Tensor,
                counts: torch.Tensor) -> ModelOutput:
        features = self.vision_tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1]
        cls, patches = features[:, 0], features[:, 1:]  # (batch, hidden), (batch, cells, hidden)
        colour_logits, shape_logits = self.heads["colour"](patches), self.heads["shape"](patches)
        loss = (F.cross_entropy(colour_logits.flatten(0, 1), colours.flatten())
                + F.cross_entropy(shape_logits.flatten(0, 1), shapes.flatten())
                + F.cross_entropy(self.heads["count"](cls), counts))
        return ModelOutput(loss=loss, colour_logits=colour_logits, shape_logits=shape_logits)


@dataclass
class VisionWarmupTask:
    """The warm-up as a task of the engine: `size` scenes drawn from `seed`."""

    seed: int
    size: int
    name: str = "vision-warmup"
    index: int = 0

    @property
    def train(self) -> list[int]:
        return list(range(self.size))

    def source(self, samples: list[int]) -> BatchSource:
        return BatchSource(LazyDataset(samples, lambda i: draw_scene_labels(self.seed, i)), stack)


def warm_up_vision(vision_tower: nn.Module, hidden: int, steps: int, batch_size: int, lr: float, seed: int) -> float:
    """Train `vision_tower` with per-cell and count heads through the engine; returns the per-cell accuracy
    (0-1, colour and shape both right) on 256 held-out scenes."""
    probe = VisionProbe(vision_tower, hidden)
    engine = Engine(TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, warmup_ratio=0.05, weight_decay=0.01,
                                max_grad_norm=None, progress=False), cpu=True)
    method = FullFineTune()
    probe = engine.attach(method, probe)
    probe, _ = engine.fit_task(probe, method, VisionWarmupTask(seed, steps * batch_size), seed=seed)
    held_out = stack([draw_scene_labels(seed + 1_000_003, i) for i in range(256)])
    with torch.no_grad():
        out = probe(**held_out)
    right = (out.colour_logits.argmax(-1) == held_out["colours"]) & (out.shape_logits.argmax(-1) == held_out["shapes"])
    vision_tower.requires_grad_(False)
    return float(right.float().mean())
