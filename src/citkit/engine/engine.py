"""The engine: the one training loop of citkit. Every part trains through `Engine.fit_task`.

The continual runner, the tiny model's pretraining and vision warm-up, a federated client and a
class-incremental ViT run all call `fit_task(model, method, task, previous)`, which runs the method's
per-task sequence:

    samples = method.training_samples(task, previous)
    method.before_task(task, model)
    steps:  method.objective + method.loss -> backward (accumulated) -> clip -> optimizer, schedule
            method.after_step(model)
    method.after_task(task, model)

It runs on `accelerate`, so `accelerate launch` gives DDP, FSDP or DeepSpeed without a change here.
One *step* is one optimizer update, whatever the gradient accumulation: the micro-batches of a step
are weighted by the items their loss averages over (answer tokens), so k micro-batches of b give the
gradient of one batch of k*b. The optimizer and schedule of a task are released when it ends.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from accelerate import Accelerator, DistributedType
from accelerate.logging import get_logger
from accelerate.tracking import GeneralTracker
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler, set_seed

from citkit.engine.batches import BatchSource
from citkit.engine.config import TrainConfig, steps_for
from citkit.engine.length_grouping import LengthGroupedBatches
from citkit.engine.tracking import make_accelerator
from citkit.errors import ConfigError, IncompatibleMethodError

if TYPE_CHECKING:
    from citkit.methods.base import Method

logger = get_logger(__name__)


class TrainableTask(Protocol):
    """What `fit_task` needs of a task: a name, its position, its samples and a batch source over them."""

    name: str
    index: int

    @property
    def train(self) -> list[Any]: ...

    def source(self, samples: list[Any]) -> BatchSource: ...


@dataclass
class TrainResult:
    """What one task's training did."""

    steps: int
    seconds: float
    samples: int
    trainable_parameters: int
    final_loss: dict[str, float]
    log: list[dict[str, float]] = field(default_factory=list)


class _CyclingLoader:
    """Repeat a DataLoader for as many batches as asked (epochs need not be whole)."""

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader
        self.iterator = iter(loader)

    def next(self) -> dict[str, Tensor]:
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)


class Engine:
    """Trains a model one task at a time, calling a method's hooks; owns the accelerator and trackers."""

    def __init__(self, config: TrainConfig, accelerator: Accelerator | None = None, *, cpu: bool = False,
                 project_dir: str | Path | None = None, trackers: list[GeneralTracker] | None = None) -> None:
        """`accelerator`: one you built (its mixed precision and trackers are then yours); otherwise one is
        made from `config` (mixed precision, `log_with`) plus any custom `trackers`, logging under
        `project_dir`."""
        self.config = config
        self.accelerator = accelerator or make_accelerator(config, cpu=cpu, project_dir=project_dir,
                                                           extra_trackers=trackers)
        self.global_step = 0  # steps over every task so far: the x axis of the trackers
        self._tracking = False

    @property
    def is_main_process(self) -> bool:
        return bool(self.accelerator.is_main_process)

    # --- structure ---
    def attach(self, method: Method, model: nn.Module) -> nn.Module:
        """Let `method` add its trainable structure; the base parameters are remembered first."""
        model.requires_grad_(False)
        method.remember_base(model)
        model = method.attach(model)
        return model.to(self.accelerator.device)

    # --- the one per-task sequence ---
    def fit_task(self, model: nn.Module, method: Method, task: TrainableTask, previous: list[Any] | None = None,
                 seed: int = 0) -> tuple[nn.Module, TrainResult]:
        """Train `task` with `method`'s hooks: samples, before_task, steps, after_task. Returns the model
        (unwrapped from any distributed wrapper) and what the training did."""
        if not method.trains:
            raise IncompatibleMethodError(f"{type(method).__name__} does not train (trains=False); evaluate the "
                                          "base model instead of calling fit_task")
        set_seed(seed)
        samples = method.training_samples(task, list(previous or []))
        method.before_task(task, model)
        result = self.train(model, method, task.source(samples), task.name, seed)
        method.after_task(task, model)
        return model, result

    def train(self, model: nn.Module, method: Method, source: BatchSource, name: str, seed: int) -> TrainResult:
        """The steps of one task on `source` (no task hooks). `fit_task` is the entry point; this is public
        for benchmarks and tests that time or inspect the steps alone."""
        config, accelerator = self.config, self.accelerator
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ConfigError(f"task {name!r}: the model has no trainable parameter; did the method attach an adapter?")
        if len(source) == 0:
            raise ConfigError(f"task {name!r}: no training sample")
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        generator = torch.Generator().manual_seed(seed)
        # Workers start anew each epoch (not persistent): the DataLoader then draws each epoch's order from
        # `generator` exactly as without workers, so num_workers never changes which batches the model sees.
        if config.group_by_length:
            loader = DataLoader(source.dataset, collate_fn=source.collate, num_workers=config.num_workers,
                                batch_sampler=LengthGroupedBatches(source.lengths(), config.batch_size, generator))
        else:
            loader = DataLoader(source.dataset, batch_size=config.batch_size, shuffle=True, generator=generator,
                                collate_fn=source.collate, num_workers=config.num_workers)
        total = steps_for(config, len(source), accelerator.num_processes)
        optimizer = torch.optim.AdamW(parameter_groups(model, named, config), lr=config.lr,
                                      weight_decay=config.weight_decay)
        # The schedule is stepped here once per step, not prepared: accelerate would step it once per process.
        scheduler = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * total),
                                  num_training_steps=total)
        wrapped, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        batches = _CyclingLoader(loader)
        params = [p for _, p in named]
        wrapped.train()
        log: list[dict[str, float]] = []
        running: dict[str, float] = {}
        bar = tqdm(total=total, desc=f"train {name}", disable=not (config.progress and self.is_main_process),
                   leave=False)
        start = time.perf_counter()
        try:
            for step in range(1, total + 1):
                micro = [batches.next() for _ in range(config.grad_accum)]
                running = self._step(wrapped, method, micro, source)
                if config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                lr = scheduler.get_last_lr()[0]  # the lr this update uses
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                method.after_step(model)
                self.global_step += 1
                if step % config.log_every == 0 or step == total:
                    log.append({"step": step, "lr": lr, **running})
                    self.log({f"train/{k}": v for k, v in {"lr": lr, **running}.items()})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()})
                bar.update(1)
        finally:
            bar.close()
            wrapped.eval()
            model.eval()
            accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)  # restores the forward mixed precision patched
            # Drop the task's optimizer, loader and wrapper references held by the accelerator.
            del wrapped, optimizer, loader, batches, scheduler
            accelerator.free_memory()
        seconds = time.perf_counter() - start
        return TrainResult(total, seconds, len(source), sum(p.numel() for p in params), running, log)

    def _step(self, model: nn.Module, method: Method, micro: list[dict[str, Tensor]],
              source: BatchSource) -> dict[str, float]:
        """Forward and backward of one step's micro-batches; returns the step's loss parts.

        Micro-batch i's base loss (a mean over n_i items) is weighted n_i / N, N the items of the whole
        step over every process, so the accumulated gradient is the gradient of the mean over all N
        items, as one big batch. The method's extra terms are averaged over the micro-batches."""
        accelerator = self.accelerator
        counts = torch.tensor([source.count_items(b) for b in micro], dtype=torch.float64)
        total_items = float(accelerator.reduce(counts.sum().to(accelerator.device), reduction="sum"))
        # accelerate divides by its own accumulation count in backward; DDP averages over processes.
        scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / max(total_items, 1.0)
        parts_sum: dict[str, float] = {}
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if last or accelerator.distributed_type == DistributedType.DEEPSPEED \
                else accelerator.no_sync(model)
            with sync:
                outputs = model(**batch)
                base = method.objective(batch, outputs, model)
                extra = method.loss(batch, outputs, model)
                loss = sum(extra.values()) * (accelerator.gradient_accumulation_steps / len(micro))
                if counts[i] > 0:  # a micro-batch whose answers were all cut off adds no base loss (not NaN)
                    loss = loss + sum(v * float(counts[i]) for v in base.values()) * scale
                if isinstance(loss, Tensor):
                    accelerator.backward(loss)
            share = float(counts[i]) * accelerator.num_processes / max(total_items, 1.0)
            for key, value in (base.items() if counts[i] > 0 else ()):
                parts_sum[key] = parts_sum.get(key, 0.0) + float(value.detach()) * share
            for key, value in extra.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + float(value.detach()) / len(micro)
        return parts_sum

    # --- trackers ---
    def start_tracking(self, run_name: str, settings: dict[str, Any]) -> None:
        """Open the trackers for one run, with its settings as hyper-parameters (no-op without trackers)."""
        if self.accelerator.log_with and not self._tracking:
            self.accelerator.init_trackers(run_name, config=flatten(settings))
            self._tracking = True

    def log(self, values: dict[str, float], step: int | None = None) -> None:
        """Send numbers to the trackers at `step` (default: the engine's global step)."""
        if self._tracking:
            self.accelerator.log(values, step=self.global_step if step is None else step)

    def end_tracking(self) -> None:
        """Close the trackers (flush files, finish remote runs)."""
        if self._tracking:
            self.accelerator.end_training()
            self._tracking = False


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as 'a.b' keys with scalar values (what trackers accept as hyper-parameters)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def parameter_groups(model: nn.Module, named: list[tuple[str, nn.Parameter]],
                     config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: the projector's parameters at `projector_lr` (or `projector_lr_scale` x lr), everything
    else at `lr`. Setting a projector rate while nothing trains the projector is warned about."""
    rate = config.projector_rate
    if rate is None:
        return [{"params": [p for _, p in named]}]
    projector_ids = {id(p) for p in projector_parameters(model)}
    projector = [p for _, p in named if id(p) in projector_ids]
    rest = [p for _, p in named if id(p) not in projector_ids]
    groups = [{"params": rest}] if rest else []
    if projector:
        groups.append({"params": projector, "lr": rate})
    else:
        logger.warning("train.projector_lr / projector_lr_scale is set but the projector does not train here; set "
                       "adapter.train_projector=true (EProj always trains its projector experts)")
    return groups


def projector_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the vision-language projector (peft's trained copy, EProj's experts included), found
    through the model-family boundary."""
    from citkit.models.families import projector

    return list(projector(model).parameters())


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """transformers' non-reentrant activation checkpointing on the (possibly peft-wrapped) model."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    enable = getattr(target, "activation_checkpointing_enable", None)  # transformers >= 5.x
    if enable is None and hasattr(target, "gradient_checkpointing_enable"):
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return
    if enable is None or not getattr(target, "supports_gradient_checkpointing", False):
        raise ConfigError(f"train.gradient_checkpointing: {type(target).__name__} cannot checkpoint its activations "
                          "(not a transformers model that supports it); set it to false")
    if not getattr(target, "is_activation_checkpointing", False):
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
