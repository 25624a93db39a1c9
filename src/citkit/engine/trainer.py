"""The one training loop. Every method, federated client and pretraining run goes through it.

It runs on `accelerate` (so `accelerate launch` gives DDP/FSDP/DeepSpeed unchanged), calls the
method's hooks, sums the named loss terms the method returns and logs each one. One *step* is one
optimizer update, whatever the gradient accumulation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from citkit.data.encoding import collate
from citkit.errors import ConfigError

if TYPE_CHECKING:
    from citkit.data.samples import Sample
    from citkit.engine.task_data import TaskData
    from citkit.methods.base import Method

logger = get_logger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How each task is trained. Defaults suit the built-in toy world on a CPU."""

    epochs: float = field(default=3.0, metadata={"help": "Passes over each task's training samples (papers: 1)."})
    max_steps: int | None = field(default=None, metadata={"help": "Fixed number of steps per task; overrides epochs."})
    batch_size: int = field(default=16, metadata={"help": "Samples per forward pass, per device."})
    grad_accum: int = field(default=1, metadata={"help": "Forward passes per optimizer step."})
    lr: float = field(default=2e-3, metadata={"help": "Peak learning rate (papers: 2e-4 on 7B models)."})
    lr_schedule: str = field(default="cosine", metadata={"help": "Any transformers scheduler name: cosine, linear, constant, ..."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Fraction of a task's steps spent warming up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "Gradient clipping norm; None disables it."})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'bf16' or 'fp16' (accelerate)."})
    log_every: int = field(default=10, metadata={"help": "Log the loss parts every this many steps."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar per task."})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"train.batch_size and train.grad_accum must be >= 1, got {self.batch_size}, {self.grad_accum}")
        if self.max_steps is None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be > 0 (got {self.epochs}), or set train.max_steps")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"train.mixed_precision {self.mixed_precision!r}: use 'no', 'bf16' or 'fp16'")


@dataclass
class TrainResult:
    """What one task's training did."""

    steps: int
    seconds: float
    samples: int
    trainable_parameters: int
    final_loss: dict[str, float]
    log: list[dict[str, float]] = field(default_factory=list)


def steps_for(config: TrainConfig, n_samples: int, world_size: int = 1) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum * world_size
    return max(1, math.ceil(config.epochs * n_samples / per_step))


class _CyclingLoader:
    """Repeat a DataLoader for as many batches as asked (epochs need not be whole)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.iterator = iter(loader)

    def next(self) -> dict[str, torch.Tensor]:
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)


def train_task(model: torch.nn.Module, method: Method, task: TaskData, samples: list[Sample],
               config: TrainConfig, accelerator: Accelerator, seed: int) -> TrainResult:
    """Train `model`'s trainable parameters on `samples` for one task, calling `method`'s hooks."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"task {task.name!r}: the model has no trainable parameter; did the method attach an adapter?")
    encoded = [task.cache.train(s) for s in samples]
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(encoded, batch_size=config.batch_size, shuffle=True, generator=generator,
                        collate_fn=lambda b: collate(b, task.cache.pad_id, "right"))
    total = steps_for(config, len(encoded), accelerator.num_processes)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * total),
                              num_training_steps=total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    batches = _CyclingLoader(loader)
    model.train()
    log: list[dict[str, float]] = []
    running: dict[str, float] = {}
    bar = tqdm(total=total, desc=f"train {task.name}", disable=not (config.progress and accelerator.is_main_process),
               leave=False)
    start = time.perf_counter()
    for step in range(1, total + 1):
        for _ in range(config.grad_accum):
            batch = batches.next()
            with accelerator.accumulate(model):
                outputs = model(**batch)
                parts = {"ce": outputs.loss, **method.loss(batch, outputs, model)}
                loss = sum(parts.values())
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        method.after_step(model)
        running = {k: float(v.detach()) for k, v in parts.items()}
        if step % config.log_every == 0 or step == total:
            log.append({"step": step, "lr": scheduler.get_last_lr()[0], **running})
            bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()})
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    return TrainResult(total, seconds, len(encoded), sum(p.numel() for p in params), running, log)


def unwrap(accelerator: Accelerator, model: Any) -> Any:
    return accelerator.unwrap_model(model)
