"""How each task is trained: the engine's settings, with their meaning and the papers' values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from citkit.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """How each task is trained. Defaults suit the built-in toy world on a CPU.

    Terms: one *step* is one optimizer update. A step sees `batch_size * grad_accum * processes` samples
    (the global batch); the learning-rate schedule advances once per step."""

    epochs: float = field(default=3.0, metadata={"help": "Passes over each task's training samples (papers: 1)."})
    max_steps: int | None = field(default=None, metadata={"help": "Fixed number of steps per task; overrides epochs."})
    batch_size: int = field(default=16, metadata={"help": "Samples per forward pass (micro-batch), per process."})
    grad_accum: int = field(default=1, metadata={"help": (
        "Micro-batches accumulated into one optimizer step. k micro-batches of b equal one batch of k*b: the "
        "loss is weighted by answer tokens over the whole step, the optimizer and the LR schedule advance once "
        "(papers: per-device batch 4 x accumulation 2 on 8 GPUs = global batch 64).")})
    lr: float = field(default=5e-4, metadata={"help": (
        "Peak learning rate (papers: 2e-4 for LoRA on 7B models). The toy worlds' numbers before 2026-12-07 were "
        "measured at 2e-3, where LoRA-FT forgets at the edge of the default world's window.")})
    projector_lr: float | None = field(default=None, metadata={"help": (
        "Learning rate of the vision-language projector when a method trains it (adapter.train_projector with "
        "any LoRA method, O-LoRA, MoELoRA or HiDe-LLaVA; EProj's projector experts); None: the same as lr "
        "(papers: 2e-5 projector with 2e-4 LoRA). The projector's schedule has the same shape as lr's.")})
    projector_lr_scale: float | None = field(default=None, metadata={"help": (
        "The projector's learning rate as a multiple of lr, instead of projector_lr (HiDe-LLaVA's code: 0.1, i.e. "
        "2e-5 with 2e-4). None: use projector_lr. Setting both is refused.")})
    lr_schedule: str = field(default="cosine", metadata={"help": (
        "Any transformers scheduler name: cosine, linear, constant, ...")})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Fraction of a task's steps spent warming up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": (
        "Clip the global gradient norm of each step (after accumulation) to this; None disables it.")})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'bf16' or 'fp16' autocast (accelerate)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": (
        "Recompute the language model's decoder-block activations in the backward pass instead of keeping "
        "them: less activation memory, about one more forward pass of time.")})
    num_workers: int = field(default=0, metadata={"help": (
        "DataLoader worker processes that read and encode samples while the model trains (0: in the main "
        "process). The batches and their order are the same either way; workers restart each epoch and "
        "encode its samples again.")})
    group_by_length: bool = field(default=False, metadata={"help": (
        "Batch samples of like token length together, as the transformers Trainer's group_by_length: each "
        "epoch's random order is cut into groups of 50 batches, each group sorted by length and cut into "
        "batches, and the batches are shuffled. Less padding per step (faster when lengths vary), but other "
        "batches than plain shuffling; every sample is still seen once per epoch. Encodes every training "
        "sample once before the task to know its length.")})
    log_every: int = field(default=10, metadata={"help": "Log the loss parts and the lr every this many steps."})
    log_with: str | None = field(default=None, metadata={"help": (
        "Experiment trackers, comma-separated, through accelerate: tensorboard, wandb, mlflow, comet_ml, aim, "
        "clearml, dvclive, swanlab, trackio (the package must be installed). Logged: loss parts and lr per "
        "logged step, every matrix row and the final metrics.")})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar per task."})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"train.batch_size and train.grad_accum must be >= 1, got {self.batch_size}, "
                              f"{self.grad_accum}")
        if self.max_steps is None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be > 0 (got {self.epochs}), or set train.max_steps")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0 or (self.projector_lr is not None and self.projector_lr <= 0):
            raise ConfigError(f"train.lr and train.projector_lr must be > 0, got {self.lr}, {self.projector_lr}")
        if self.projector_lr_scale is not None and self.projector_lr_scale <= 0:
            raise ConfigError(f"train.projector_lr_scale must be > 0, got {self.projector_lr_scale}")
        if self.projector_lr is not None and self.projector_lr_scale is not None:
            raise ConfigError(f"train.projector_lr ({self.projector_lr}) and train.projector_lr_scale "
                              f"({self.projector_lr_scale}) are both set; keep one")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"train.mixed_precision {self.mixed_precision!r}: use 'no', 'bf16' or 'fp16'")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0, got {self.num_workers}")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be >= 1, got {self.log_every}")

    @property
    def projector_rate(self) -> float | None:
        """The projector's own peak learning rate, or None when it trains at lr."""
        if self.projector_lr_scale is not None:
            return self.projector_lr_scale * self.lr
        return self.projector_lr

    @property
    def trackers(self) -> list[str]:
        return [name.strip() for name in (self.log_with or "").split(",") if name.strip()]


def steps_for(config: TrainConfig, n_samples: int, processes: int = 1) -> int:
    """Optimizer steps of one task: `max_steps`, or `epochs` passes at the global batch size."""
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum * processes
    return max(1, math.ceil(config.epochs * n_samples / per_step))


def per_process_batch(global_batch: int, processes: int) -> int:
    """Each process's share of a step's `global_batch` samples: with it, P processes train on the same
    samples per step as one process at `global_batch`. A batch that does not split evenly is refused."""
    if global_batch % processes:
        raise ConfigError(f"a step's {global_batch} samples do not split evenly over {processes} processes")
    return global_batch // processes
