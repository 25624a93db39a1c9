"""The method interface: a small object whose hooks the engine calls at named moments.

Order of calls in a run (see docs/architecture.md); `Engine.attach` and `Engine.fit_task` make them:

    attach(model)                          once, before the first task: add adapters / experts
    resume(model, finished)                once, when a run continues: rebuild per-task structure
    for each task (Engine.fit_task):
        training_samples(task, previous)   which samples to train on (replay, joint)
        before_task(task, model)           snapshot weights, add this task's adapter, similarities
        for each micro-batch of a step:
            objective(batch, outputs, model)  the base loss, by name (default: the model's own loss)
            loss(batch, outputs, model)    extra loss terms, returned by name (the engine sums them)
        after_step(model)                  after the optimizer update
        after_task(task, model)            importances, anchors, merging
    evaluating(task)                       at inference: a context around one task's test generation
    route(batch, model)                    at inference: a context in which the model routes per sample
    inference_report(tasks, model)         after each row's evaluation: numbers about how the method infers

Methods never call `backward()` or `optimizer.step()`: the engine owns the step, so mixed precision,
gradient accumulation and multi-GPU work the same for every method. State that crosses tasks goes
through `state_dict()` (tensors, saved with safetensors) and `extra_state()` (JSON); the weights a
method added to or trains in the model go through `trainable_state()` / `load_trainable_state()`,
the one contract that checkpoints, resume and federated payloads use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from citkit.errors import ConfigError, ResumeMismatchError
from citkit.models.lora import AdapterConfig, add_lora
from citkit.registry import Registry

if TYPE_CHECKING:
    from citkit.data.samples import Sample
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class MethodConfig:
    """Methods without options use this empty config."""


class Method:
    """Base class: every hook is a no-op, so a method overrides only what it needs."""

    config_class: ClassVar[type] = MethodConfig
    trains: ClassVar[bool] = True            # False for zero-shot: the runner skips training

    def __init__(self, config: Any = None, adapter: AdapterConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.adapter = adapter or AdapterConfig()
        self._base_ids: set[int] | None = None  # ids of the base model's parameters, before attach

    def remember_base(self, model: nn.Module) -> None:
        """Called by the engine before `attach`: the base parameters, so that `trainable_state` knows
        what the method added."""
        self._base_ids = {id(p) for p in model.parameters()}

    # --- structure ---
    def attach(self, model: nn.Module) -> nn.Module:
        """Called once before the first task; default: one LoRA adapter on the language model."""
        return add_lora(model, self.adapter)

    def resume(self, model: nn.Module, finished: list[str]) -> nn.Module:
        """Rebuild per-task structure (e.g. one adapter per finished task) before weights are loaded."""
        return model

    # --- training ---
    def training_samples(self, task: TaskData, previous: list[TaskData]) -> list[Sample]:
        """The samples to train on for `task`; `previous` are the earlier tasks of the stream."""
        return task.train

    def before_task(self, task: TaskData, model: nn.Module) -> None:
        """Called before training on `task`."""

    def objective(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        """The base loss of a micro-batch, by name: a mean over the batch's `loss_items` (answer tokens, or
        samples for class labels), which the engine weights for exact gradient accumulation. Default: the
        model's own loss (`outputs.loss`, the LM cross-entropy). Override to mask or replace it
        (class-incremental logit masking, a distillation-only phase)."""
        if getattr(outputs, "loss", None) is None:
            raise ConfigError(f"{type(self).__name__}: the model returned no loss; the batch needs labels, or "
                              "the method must override objective()")
        return {"ce": outputs.loss}

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        """Extra loss terms, by name (penalties, distillation); the engine adds them to the objective and
        logs each one. Under gradient accumulation each is averaged over the step's micro-batches."""
        return {}

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimizer update."""

    def after_task(self, task: TaskData, model: nn.Module) -> None:
        """Called after training on `task`, before evaluation."""

    # --- inference ---
    def evaluating(self, task: TaskData) -> contextlib.AbstractContextManager[None]:
        """A context around the generation of `task`'s test answers (the evaluator opens it); default: nothing.
        Only diagnostics may use it (HiDe-LLaVA's oracle routing): a deployable method cannot know the task."""
        return contextlib.nullcontext()

    def route(self, batch: dict[str, Tensor], model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """A context inside which `model` processes `batch` (per-sample routing); default: nothing."""
        return contextlib.nullcontext()

    def inference_report(self, tasks: list[TaskData], model: nn.Module) -> dict[str, Any]:
        """Called by the runner after each row's evaluation with every task of the stream: JSON numbers about
        how the method infers (HiDe-LLaVA: how often its router picks each test sample's task), saved with the
        row in tasks.json and shown in report.md. Default: nothing."""
        return {}

    # --- state ---
    def trainable_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The weights this method added to `model` or trains in it (adapters, experts, a trained projector),
        by parameter name: what a checkpoint stores and what a federated client sends."""
        base = self._base_ids or set()
        return {n: p.detach() for n, p in model.named_parameters() if id(p) not in base or p.requires_grad}

    def load_trainable_state(self, model: nn.Module, state: dict[str, Tensor], where: str = "checkpoint") -> None:
        """Copy `state` (from `trainable_state`) into `model`. Every tensor must exist in the model, and
        every parameter the method added must be in `state` (a rebuilt model that grew a tensor the state
        lacks would otherwise keep its random initialisation silently)."""
        params = dict(model.named_parameters())
        missing = [k for k in state if k not in params]
        if missing:
            raise ResumeMismatchError(f"{where}: holds {missing[0]!r}, which the rebuilt model lacks")
        if self._base_ids is not None:
            unsaved = [n for n, p in params.items() if id(p) not in self._base_ids and n not in state]
            if unsaved:
                raise ResumeMismatchError(f"{where}: the rebuilt model has {unsaved[0]!r} ({len(unsaved)} such "
                                          "tensors), which the state lacks")
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise ResumeMismatchError(f"{where}: {name!r} has shape {tuple(value.shape)}, the model's "
                                              f"{tuple(params[name].shape)}")
                params[name].copy_(value.to(params[name].device, params[name].dtype))

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no tensor state but got {sorted(state)[:3]}")

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state (counters, sample ids)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of `extra_state`."""


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str):  # type: ignore[no-untyped-def]
    """Class decorator: make a method selectable by `name`."""

    def decorator(cls: type[Method]) -> type[Method]:
        cls.name = name  # type: ignore[attr-defined]
        return METHODS.register(name)(cls)

    return decorator


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def snapshot_trainable(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the trainable parameters, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def iter_trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def to_device(tensors: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in tensors.items()}
