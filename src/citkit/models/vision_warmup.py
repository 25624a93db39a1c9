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
from torch import nn

from citkit.data.toy.scenes import BACKGROUNDS, COLOURS, GRID, SHAPES, random_scene, render

COLOUR_CLASSES = ["none", *COLOURS]
SHAPE_CLASSES = ["none", *SHAPES]
MAX_OBJECTS = 6


@dataclass
class VisionBatch:
    pixels: torch.Tensor   # (batch, 3, H, W), normalised to [-1, 1] as the processor does
    colours: torch.Tensor  # (batch, cells) class index, 0 = empty cell
    shapes: torch.Tensor   # (batch, cells)
    counts: torch.Tensor   # (batch,)


def draw_vision_batch(rng: np.random.Generator, size: int) -> VisionBatch:
    pixels, colours, shapes, counts = [], [], [], []
    for _ in range(size):
        scene = random_scene(rng, int(rng.integers(0, MAX_OBJECTS + 1)), int(rng.integers(len(BACKGROUNDS))))
        pixels.append(render(scene))
        cells = [scene.at(c) for c in range(GRID * GRID)]
        colours.append([COLOUR_CLASSES.index(o.colour) if o else 0 for o in cells])
        shapes.append([SHAPE_CLASSES.index(o.shape) if o else 0 for o in cells])
        counts.append(len(scene.objects))
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255.0
    return VisionBatch((images - 0.5) / 0.5, torch.tensor(colours), torch.tensor(shapes), torch.tensor(counts))


def warm_up_vision(vision_tower: nn.Module, hidden: int, steps: int, batch_size: int, lr: float, seed: int) -> float:
    """Train `vision_tower` with per-cell and count heads; returns the final per-cell accuracy (0-1)."""
    rng = np.random.default_rng([seed, 7])
    heads = nn.ModuleDict({"colour": nn.Linear(hidden, len(COLOUR_CLASSES)),
                           "shape": nn.Linear(hidden, len(SHAPE_CLASSES)),
                           "count": nn.Linear(hidden, MAX_OBJECTS + 1)})
    params = list(vision_tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    loss_fn = nn.CrossEntropyLoss()
    vision_tower.train()
    accuracy = 0.0
    for _ in range(steps):
        batch = draw_vision_batch(rng, batch_size)
        features = vision_tower(pixel_values=batch.pixels, output_hidden_states=True).hidden_states[-1]
        cls, patches = features[:, 0], features[:, 1:]  # (batch, hidden), (batch, cells, hidden)
        colour_logits, shape_logits = heads["colour"](patches), heads["shape"](patches)
        loss = (loss_fn(colour_logits.flatten(0, 1), batch.colours.flatten())
                + loss_fn(shape_logits.flatten(0, 1), batch.shapes.flatten())
                + loss_fn(heads["count"](cls), batch.counts))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            right = (colour_logits.argmax(-1) == batch.colours) & (shape_logits.argmax(-1) == batch.shapes)
            accuracy = float(right.float().mean())
    vision_tower.eval()
    return accuracy
