"""The class-incremental loop: for each task, grow the head, train through the engine, score every seen class.

`run_cil(CILRunConfig)` is what `citkit cil run` calls. Everything that trains goes through
`Engine.fit_task`: the task's own training, and each `Phase` a method yields after it (merge
calibration, classifier alignment). The run directory is the only state (`citkit.rundir`):

```
runs/<name>/  config.json, environment.json, tasks.json, checkpoints/task_<t>/ (as a CIT run)
              stages.json      one entry per finished stage: pooled accuracy, per-task accuracies, bias
              matrix.json/csv  the task matrix (row 0 empty: a CIL head has no zero-shot row)
              metrics.json     Avg, Last (pooled), MAA, MFN (task-averaged), BWT, Forgetting, bias
              predictions/row_<t>.jsonl, report.md, accuracy.png
```
The checkpoint of stage t is written before stage t's entry in stages.json, so a run killed at any moment
resumes after its last finished stage and reaches the numbers of an uninterrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from torch import nn

from citkit.cil.backbone import BackboneConfig, ViTAdapterConfig, ViTClassifier, build_classifier
from citkit.cil.methods import CIL_METHODS, CILMethod, Phase
from citkit.cil.metrics import CILMetrics, StageResult, cil_metrics, stage_result, task_matrix
from citkit.cil.stream import CILDataConfig, CILStream, CILTask, build_stream
from citkit.config import from_dict, to_dict
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine, TrainResult
from citkit.errors import ConfigError, ResumeMismatchError
from citkit.eval.matrix import AccuracyMatrix
from citkit.io import read_json, write_json
from citkit.rundir import RunDirectory, environment

logger = get_logger(__name__)


def _default_train() -> TrainConfig:
    return TrainConfig(epochs=5.0, batch_size=32, lr=5e-3, warmup_ratio=0.05)


@dataclass(frozen=True)
class CILRunConfig:
    """Everything that determines a class-incremental run's numbers."""

    method: str = field(default="lora-ft", metadata={"help": "CIL method name (see `citkit cil methods`)."})
    method_options: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "Options of the method's own config (--set method.NAME=VALUE).")})
    data: CILDataConfig = field(default_factory=CILDataConfig, metadata={"help": "The stream (data.*)."})
    model: BackboneConfig = field(default_factory=BackboneConfig, metadata={"help": "Backbone and head (model.*)."})
    adapter: ViTAdapterConfig = field(default_factory=ViTAdapterConfig, metadata={"help": "LoRA (adapter.*)."})
    train: TrainConfig = field(default_factory=_default_train, metadata={"help": (
        "How each task trains (train.*); CIL defaults: 5 epochs, batch 32, lr 5e-3, warm-up 5 %.")})
    eval_batch_size: int = field(default=128, metadata={"help": "Images per forward pass at evaluation."})
    seed: int = field(default=0, metadata={"help": "Seed of the head and adapter init, data order, pseudo-features."})
    name: str = field(default="", metadata={"help": "Run name (default: cil-<dataset>-<method>-seed<seed>)."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder that holds run directories."})

    def __post_init__(self) -> None:
        self.method_config()  # unknown methods and options fail here
        if self.eval_batch_size < 1:
            raise ConfigError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")

    def method_config(self) -> Any:
        cls = CIL_METHODS.get(self.method).config_class
        return from_dict(cls, self.method_options, f"method ({self.method})")

    def default_name(self, label: str = "") -> str:
        return f"cil-{self.data.dataset}-{self.data.tasks}t-{label or self.method}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / (self.name or self.default_name())

    def identity(self) -> dict[str, Any]:
        data = to_dict(self)
        data.pop("runs_dir")
        data.pop("eval_batch_size")
        for key in ("progress", "log_every", "log_with", "num_workers"):
            data["train"].pop(key)
        data["method_options"] = to_dict(self.method_config())
        return data


@dataclass
class CILRunResult:
    run_dir: Path
    stages: list[StageResult]
    metrics: CILMetrics


def build_method(config: CILRunConfig) -> CILMethod:
    method = CIL_METHODS.get(config.method)(config.method_config(), config.adapter)
    method.run_seed = config.seed
    return method


@torch.no_grad()
def evaluate_stage(model: ViTClassifier, method: CILMethod, tasks: list[CILTask], stage: int,
                   batch_size: int) -> tuple[StageResult, list[dict[str, Any]], float]:
    """Predict every test image of the first `stage` tasks among all seen classes."""
    method.prepare_inference(model)
    model.eval()
    device = next(model.parameters()).device
    predictions, labels, rows = [], [], []
    start = time.perf_counter()
    for task in tasks[:stage]:
        for offset, batch in zip(range(0, len(task.test_indices), batch_size), task.batches(batch_size, split="test"),
                                 strict=True):
            predicted = model(pixel_values=batch["pixel_values"].to(device)).logits.argmax(-1).cpu()
            predictions.append(predicted.numpy())
            labels.append(batch["labels"].numpy())
            for index, label, guess in zip(task.test_indices[offset:offset + batch_size], batch["labels"].tolist(),
                                           predicted.tolist(), strict=True):
                rows.append({"id": f"test-{index}", "label": label, "prediction": guess})
    seconds = time.perf_counter() - start
    result = stage_result(stage, np.concatenate(predictions), np.concatenate(labels), [t.classes for t in tasks])
    return result, rows, seconds


def _grow_head(model: ViTClassifier, task: CILTask, seed: int) -> None:
    torch.manual_seed(seed * 1000 + 500 + task.index)  # the new head block's init, the same on resume
    model.head.add_classes(len(task.classes))


def run_phase(engine: Engine, model: nn.Module, phase: Phase, seed: int) -> TrainResult:
    """Train one phase with `Engine.fit_task` (its own settings, the run's accelerator); the requires_grad
    flags of `model`, which the phase's attach changes, are restored afterwards."""
    flags = {id(p): p.requires_grad for p in model.parameters()}
    phase_engine = Engine(phase.train, accelerator=engine.accelerator)
    phase_engine.attach(phase.method, phase.model)
    try:
        _, result = phase_engine.fit_task(phase.model, phase.method, phase.task, seed=seed)
    finally:
        for p in model.parameters():
            p.requires_grad_(flags.get(id(p), p.requires_grad))
    return result


def _train_task(engine: Engine, model: nn.Module, method: CILMethod, task: CILTask, previous: list[CILTask],
                seed: int) -> tuple[Any, float, dict[str, Any]]:
    """The task's own training, then each phase the method yields, all through `Engine.fit_task`."""
    seconds = 0.0
    result = None
    if method.trains:
        model, result = engine.fit_task(model, method, task, previous, seed=seed)
        seconds += result.seconds
    else:  # SimpleCIL: nothing to train, the method only reads the task (class means)
        start = time.perf_counter()
        method.before_task(task, model)
        method.after_task(task, model)
        seconds += time.perf_counter() - start
    phases: dict[str, Any] = {}
    start = time.perf_counter()
    for number, phase in enumerate(method.phases(task, model)):
        phase_result = run_phase(engine, model, phase, seed + 100 + number)
        phases[phase.name] = {"steps": phase_result.steps, "final_loss": phase_result.final_loss}
    seconds += time.perf_counter() - start
    return result, seconds, phases


def run_cil(config: CILRunConfig, stop_after: int | None = None) -> CILRunResult:
    """Run (or resume) a class-incremental stream. `stop_after` ends after that many stages (tests)."""
    run_dir = RunDirectory(config.run_dir)
    engine = Engine(config.train, project_dir=run_dir.path)
    method = build_method(config)
    # everything that can fail on bad input happens before the first write
    model, transform = build_classifier(config.model, method.classifier)
    stream = build_stream(config.data, transform)
    tasks = stream.tasks
    resuming = run_dir.check_or_write_config(config.identity(), CILRunConfig(method=config.method).identity())
    env = environment(config.seed, str(engine.accelerator.device)) | {"backbone": config.model.path,
                                                                       "classes": stream.class_names}
    write_json(run_dir.path / "environment.json", env)
    stages_file = run_dir.path / "stages.json"
    stages = [StageResult(**s) for s in read_json(stages_file)] if resuming and stages_file.exists() else []
    tasks_log = run_dir.read_tasks_log()[:len(stages)]

    torch.manual_seed(config.seed)  # the adapter's initialisation
    model = engine.attach(method, model)
    done = len(stages)
    if done:
        if done > len(tasks):
            raise ResumeMismatchError(f"{run_dir.path}: {done} finished stages but the stream has {len(tasks)} tasks")
        for task in tasks[:done]:
            _grow_head(model, task, config.seed)
        model = method.resume(model, [t.name for t in tasks[:done]])
        trainable, tensors, extra = run_dir.load_checkpoint(done - 1)
        method.load_trainable_state(model, trainable, str(run_dir.checkpoint_dir(done - 1)))
        method.load_state_dict(tensors)
        method.load_extra_state(extra)
        model.to(engine.accelerator.device)
        logger.info(f"resuming {run_dir.path} after stage {done}")

    for index in range(done, len(tasks)):
        task = tasks[index]
        _grow_head(model, task, config.seed)
        model.to(engine.accelerator.device)
        result, seconds, phases = _train_task(engine, model, method, task, tasks[:index], config.seed * 1000 + index)
        stage, rows, eval_seconds = evaluate_stage(model, method, tasks, index + 1, config.eval_batch_size)
        stored = method.trainable_state(model)
        method_tensors = method.state_dict()
        tasks_log.append({"task": task.name, "classes": task.classes, "train_seconds": seconds,
                          "steps": result.steps if result else 0, "train_samples": result.samples if result else 0,
                          "trainable_parameters": result.trainable_parameters if result else 0,
                          "stored_parameters": sum(t.numel() for t in stored.values())
                          + sum(t.numel() for t in method_tensors.values()),
                          "stored_adapter_parameters": sum(t.numel() for k, t in stored.items() if "lora_" in k),
                          "eval_seconds_per_sample": eval_seconds / max(1, stage.samples),
                          "final_loss": result.final_loss if result else {}, "phases": phases,
                          "log": result.log if result else []})
        run_dir.save_predictions(index + 1, rows)
        run_dir.save_checkpoint(index, stored, method_tensors, method.extra_state())
        run_dir.write_tasks_log(tasks_log)
        stages.append(stage)
        write_json(stages_file, [s.as_dict() for s in stages])  # the commit point of the stage
        logger.info(f"stage {index + 1}/{len(tasks)}: pooled accuracy {stage.pooled:.1f}")
        if stop_after is not None and index + 1 >= stop_after and index + 1 < len(tasks):
            return CILRunResult(run_dir.path, stages, cil_metrics(stages, len(tasks)))
    metrics = cil_metrics(stages, len(tasks))
    finish(run_dir.path, config, stream, stages, metrics)
    return CILRunResult(run_dir.path, stages, metrics)


def finish(path: Path, config: CILRunConfig, stream: CILStream, stages: list[StageResult], metrics: CILMetrics) -> None:
    from citkit.cil.report import plot_stages, write_run_report

    matrix = AccuracyMatrix([t.name for t in stream.tasks], task_matrix(stages, len(stream.tasks)))
    matrix.save(path)
    write_json(path / "metrics.json", metrics.as_dict())
    write_run_report(path, config.method, matrix, stages, metrics)
    plot_stages({config.method: [s.pooled for s in stages]}, path / "accuracy.png",
                title=f"{config.method} on {stream.dataset}, {len(stream.tasks)} tasks")


def build_cil_config(base: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (),
                     **top: Any) -> CILRunConfig:
    """A CILRunConfig from a dict (a YAML file), `--set` overrides (`method.X` for the method's options) and
    top-level values."""
    from citkit.config import set_path
    from citkit.run_config import apply_overrides

    data: dict[str, Any] = dict(base or {})
    for key, value in top.items():
        if value is not None:
            set_path(data, key.split("."), value)
    return from_dict(CILRunConfig, apply_overrides(data, overrides))


def load_run_model(run_dir: str | Path, stage: int | None = None) -> tuple[ViTClassifier, CILMethod, CILStream]:
    """The model of a run directory after `stage` (default: the last finished one), in its test configuration."""
    path = Path(run_dir)
    if not (path / "config.json").is_file() or not (path / "stages.json").is_file():
        raise ConfigError(f"{path} is not a CIL run directory with a finished stage")
    saved = read_json(path / "config.json")
    config = from_dict(CILRunConfig, saved | {"runs_dir": str(path.parent), "name": path.name})
    done = stage or len(read_json(path / "stages.json"))
    method = build_method(config)
    model, transform = build_classifier(config.model, method.classifier)
    stream = build_stream(config.data, transform)
    engine = Engine(config.train, cpu=True)
    model = engine.attach(method, model)
    for task in stream.tasks[:done]:
        _grow_head(model, task, config.seed)
    model = method.resume(model, [t.name for t in stream.tasks[:done]])
    run_dir = RunDirectory(path)
    trainable, tensors, extra = run_dir.load_checkpoint(done - 1)
    method.load_trainable_state(model, trainable, str(run_dir.checkpoint_dir(done - 1)))
    method.load_state_dict(tensors)
    method.load_extra_state(extra)
    method.prepare_inference(model)
    return model.eval(), method, stream
