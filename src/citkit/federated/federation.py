"""What the server and every client of one federated run share: the stream, the schedule, the split of
each stage's data over clients, and how a model with the method's structure is built.

`ClientWorker` is one process's training side (a model with the method attached, and an engine): a
Flower ClientApp calls `train`, which goes through `Engine.fit_task`, the one training loop of citkit.
The server keeps one more worker for the global model, which it evaluates after each stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator
from torch import Tensor, nn
from transformers import set_seed

from citkit.data.encoding import SampleEncoder
from citkit.data.samples import Sample, Stream, Task
from citkit.data.streams import load_stream
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import ConfigError
from citkit.federated.config import FedRunConfig
from citkit.federated.local_methods import client_payload
from citkit.federated.partition import split_answer_skew, split_quantity
from citkit.federated.proximal import ProximalTerm
from citkit.federated.schedule import Schedule, build_schedule
from citkit.methods import METHODS
from citkit.methods.base import Method
from citkit.models.loading import load_model, load_processor
from citkit.models.registry import resolve_model_path


class Federation:
    """The shared, read-only description of a run: data, schedule and per-stage client data."""

    def __init__(self, config: FedRunConfig) -> None:
        self.config = config
        run = config.run
        self.model_path = resolve_model_path(run.model, Path(run.runs_dir))
        self.stream: Stream = load_stream(run.stream, Path(run.runs_dir) / "_data")
        self.processor = load_processor(self.model_path, run.model.trust_remote_code)
        self.cache = EncodingCache(SampleEncoder(self.processor), max_items=run.stream.cache_items)
        self.tasks = [TaskData(task, i, self.cache) for i, task in enumerate(self.stream.tasks)]
        self.schedule: Schedule = build_schedule(config.federated, self.stream.task_names, run.seed,
                                                 self.stream.name)
        self._splits: dict[int, list[list[Sample]]] = {}
        self._units: dict[int, list[str]] = {}

    @property
    def num_stages(self) -> int:
        return len(self.schedule.stages)

    def client_units(self, stage: int) -> list[str]:
        """The unit each client holds in `stage`."""
        if stage not in self._units:
            fed = self.config.federated
            self._units[stage] = self.schedule.client_units(stage, fed.num_clients, self.config.run.seed)
        return self._units[stage]

    def client_samples(self, stage: int) -> list[list[Sample]]:
        """Per client, its training samples in `stage` (seeded; the same on every process)."""
        if stage not in self._splits:
            self._splits[stage] = self._split(stage)
        return self._splits[stage]

    def _split(self, stage: int) -> list[list[Sample]]:
        fed = self.config.federated
        held = self.client_units(stage)
        by_task = {t.name: t.train for t in self.stream.tasks}
        parts: list[list[Sample]] = [[] for _ in range(fed.num_clients)]
        for unit in dict.fromkeys(self.schedule.stages[stage]):  # a unit listed twice is split once
            holders = [c for c, u in enumerate(held) if u == unit]
            samples = [s for task in self.schedule.unit(unit).tasks for s in by_task[task]]
            rng = np.random.default_rng([self.config.run.seed, stage, self.schedule.unit_names.index(unit), 3])
            split = split_answer_skew if fed.partition == "answer-skew" else split_quantity
            try:
                shares = split(samples, len(holders), fed.beta, rng, fed.allow_empty_clients)
            except ConfigError as error:
                raise ConfigError(f"stage {stage}, unit {unit!r}: {error}") from None
            for client, share in zip(holders, shares, strict=True):
                parts[client] = share
        return parts

    def client_task(self, stage: int, client: int) -> TaskData:
        """A client's data in `stage` as the task `fit_task` trains (index = stage: one task per stage for
        the method, whatever unit the client holds)."""
        unit = self.client_units(stage)[client]
        return TaskData(Task(unit, self.client_samples(stage)[client], []), stage, self.cache)

    def stage_seed(self, stage: int) -> int:
        return self.config.run.seed * 1000 + stage


@dataclass
class ClientResult:
    """What one client's round produced."""

    payload: dict[str, Tensor]
    report: dict[str, Tensor]
    samples: int
    steps: int
    seconds: float
    loss: float
    method_state: tuple[dict[str, Tensor], dict[str, Any]]


class ClientWorker:
    """A model with the method's structure, and an engine whose tasks are one client's round of data."""

    def __init__(self, federation: Federation, accelerator: Accelerator | None = None) -> None:
        self.federation = federation
        run = federation.config.run
        train = replace(run.train, epochs=federation.config.federated.local_epochs, max_steps=run.train.max_steps,
                        progress=False)
        self.engine = Engine(train, accelerator=accelerator)
        self.method: Method = METHODS.get(run.method)(run.method_config(), run.adapter)
        self.model: nn.Module | None = None
        self.stage = -1
        self.initial_state: tuple[dict[str, Tensor], dict[str, Any]] = ({}, {})

    def load_base(self) -> nn.Module:
        """The base model alone (row 0 of the matrix is scored on it, before any adapter)."""
        run = self.federation.config.run
        model = load_model(self.federation.model_path, run.model.dtype, run.model.trust_remote_code,
                           run.model.attn_implementation, run.model.quantization)
        model.requires_grad_(False)
        return model.to(self.engine.accelerator.device)

    def build(self, base: nn.Module | None = None) -> nn.Module:
        """Attach the method (seeded, so every process builds the same initial adapters)."""
        if self.model is None:
            base = base if base is not None else self.load_base()
            set_seed(self.federation.config.run.seed)
            self.model = self.engine.attach(self.method, base)
            self.initial_state = (dict(self.method.state_dict()), dict(self.method.extra_state()))
        return self.model

    def prepare(self, stage: int) -> nn.Module:
        """Bring the model's structure to `stage`: `method.resume` with the stages up to and including this
        one builds per-stage parts (O-LoRA's adapter of the stage), seeded by the stage so that the server
        and every client start the new part from the same values. A no-op for single-adapter methods."""
        model = self.build()
        if stage < self.stage:
            raise ConfigError(f"a client worker at stage {self.stage} cannot go back to stage {stage}")
        if stage > self.stage:
            set_seed(self.federation.stage_seed(stage))
            self.model = model = self.method.resume(model, self.federation.schedule.unit_names[: stage + 1])
            self.stage = stage
        return model

    def load_global(self, stage: int, state: dict[str, Tensor],
                    method_state: tuple[dict[str, Tensor], dict[str, Any]] | None = None) -> nn.Module:
        """The global model of `stage`: structure, the server's tensors, and the method state to run with."""
        model = self.prepare(stage)
        tensors, extra = method_state if method_state is not None else self.initial_state
        self.method.load_state_dict(tensors)
        self.method.load_extra_state(extra)
        self.method.load_trainable_state(model, state, "the global model sent by the server")
        return model

    def train(self, client: int, stage: int, round_index: int, state: dict[str, Tensor],
              method_state: tuple[dict[str, Tensor], dict[str, Any]] | None, server_info: dict[str, Any],
              proximal_mu: float = 0.0) -> ClientResult:
        """One client's round: load the global model, train the client's data through `fit_task`, return
        what the client may send and its new local method state."""
        model = self.load_global(stage, state, method_state)
        task = self.federation.client_task(stage, client)
        if not task.train:
            raise ConfigError(f"client {client} holds no data in stage {stage}")
        configure = getattr(self.method, "configure_client", None)
        if configure is not None:
            configure(server_info, task, model)
        trainer: Method = ProximalTerm(self.method, state, proximal_mu) if proximal_mu > 0 else self.method
        seed = (self.federation.stage_seed(stage) * 100 + round_index) * 1000 + client
        start = time.perf_counter()
        model, result = self.engine.fit_task(model, trainer, task, [], seed=seed)
        report = getattr(self.method, "client_report", lambda: {})()
        return ClientResult({k: v.detach().cpu().clone() for k, v in client_payload(self.method, model).items()},
                            report, len(task.train), result.steps, time.perf_counter() - start,
                            float(sum(result.final_loss.values())),
                            (dict(self.method.state_dict()), dict(self.method.extra_state())))


def full_state(method: Method, model: nn.Module) -> dict[str, Tensor]:
    """Every tensor the method added or trains, on the CPU (the global model's state)."""
    return {k: v.detach().cpu().clone() for k, v in method.trainable_state(model).items()}


def trainable_keys(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def as_float(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}



