"""Build and pretrain the tiny ViT on the pretraining shape classes, check its quality, save it.

The tiny ViT learns to see shapes and colours on the 32 `PRETRAIN_CLASSES` of `citkit.cil.images`, which
no class-incremental stream of citkit uses (`STREAM_CLASSES` is the other half): the built-in CIL
stream is leakage-free by construction. Training is a full fine-tune through the same engine every
method uses. The result must reach `quality_gate` accuracy on held-out images of its own classes or
nothing is saved.

The build is bit-identical for a given seed: it runs on one CPU thread (float reductions are then done
in a fixed order) and `torch.use_deterministic_algorithms`; `citkit cil pretrain --out DIR` rebuilds the
packaged asset (`src/citkit/assets/tiny-vit/`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import set_seed

from citkit.cil.backbone import TinyViTConfig, ViTClassifier, build_tiny_vit
from citkit.cil.datasets import ImageSet
from citkit.cil.images import PRETRAIN_CLASSES, render_many
from citkit.cil.methods.base import TrainAll
from citkit.cil.stream import CILTask, ImageTransform, StreamImages
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.errors import CitkitError, ConfigError
from citkit.io import write_json, write_text


@dataclass(frozen=True)
class ViTPretrainConfig:
    """Recipe of the tiny ViT."""

    model: TinyViTConfig = field(default_factory=TinyViTConfig)
    train_per_class: int = field(default=250, metadata={"help": "Training images per pretraining class."})
    test_per_class: int = field(default=30, metadata={"help": "Held-out images per class (quality gate)."})
    epochs: float = field(default=15.0, metadata={"help": "Passes over the training images."})
    batch_size: int = field(default=64, metadata={"help": "Images per step."})
    lr: float = field(default=3e-3, metadata={"help": "Peak learning rate (cosine schedule, AdamW)."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, the images and the order."})
    quality_gate: float = field(default=75.0, metadata={"help": "Minimum held-out accuracy (%) to save."})

    def __post_init__(self) -> None:
        if self.train_per_class < 2 or self.test_per_class < 1 or self.epochs <= 0:
            raise ConfigError(f"pretraining needs train_per_class >= 2, test_per_class >= 1, epochs > 0: {self}")


def _pretraining_task(config: ViTPretrainConfig, transform: ImageTransform) -> CILTask:
    train_x, train_y = render_many(PRETRAIN_CLASSES, "pretrain-train", config.train_per_class, config.seed)
    test_x, test_y = render_many(PRETRAIN_CLASSES, "pretrain-test", config.test_per_class, config.seed)
    identity = np.arange(len(PRETRAIN_CLASSES))
    train = StreamImages(ImageSet(train_y, arrays=train_x), identity, transform)
    test = StreamImages(ImageSet(test_y, arrays=test_x), identity, transform)
    return CILTask("pretrain", 0, identity.tolist(), list(range(len(train_y))), list(range(len(test_y))), train, test)


@torch.no_grad()
def accuracy(model: ViTClassifier, task: CILTask) -> float:
    model.eval()
    correct = total = 0
    for batch in task.batches(256, split="test"):
        correct += int((model(pixel_values=batch["pixel_values"]).logits.argmax(-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    return 100.0 * correct / total


def pretrain_tiny_vit(config: ViTPretrainConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Pretrain, gate, and save the backbone (safetensors, HF format) with quality.json to `out`."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        set_seed(config.seed)
        transform = ImageTransform(config.model.image_size)
        task = _pretraining_task(config, transform)
        model = ViTClassifier(build_tiny_vit(config.model), config.model.hidden)
        model.head.add_classes(len(PRETRAIN_CLASSES))
        engine = Engine(TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                    weight_decay=config.weight_decay, warmup_ratio=0.05, progress=progress), cpu=True)
        method = TrainAll()
        model = engine.attach(method, model)
        start = time.perf_counter()
        model, result = engine.fit_task(model, method, task, seed=config.seed)
        seconds = time.perf_counter() - start
        score = accuracy(model, task)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    quality = {"held_out_accuracy": score, "quality_gate": config.quality_gate, "steps": result.steps,
               "train_seconds": seconds, "threads": 1, "final_loss": result.final_loss,
               "parameters": sum(p.numel() for p in model.backbone.parameters()),
               "pretraining_classes": [c.name for c in PRETRAIN_CLASSES], "recipe": asdict(config),
               "command": f"citkit cil pretrain --out DIR --seed {config.seed}"}
    if score < config.quality_gate:
        raise CitkitError(f"tiny ViT pretraining reached {score:.1f}% held-out accuracy, below the gate "
                          f"{config.quality_gate}; nothing was saved")
    out = Path(out)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-vit.", dir=out.parent if out.parent.exists() else None))
    try:
        model.backbone.save_pretrained(staging)
        write_text(staging / "preprocessor_config.json", json.dumps(
            {"image_mean": list(transform.mean), "image_std": list(transform.std),
             "size": {"height": transform.size, "width": transform.size}}, indent=2) + "\n")
        write_json(staging / "quality.json", quality)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staging), out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return quality
