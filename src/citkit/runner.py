"""The continual loop: for each task, train with the method's hooks, then fill one matrix row.

This is the function the command line calls (`citkit.run(RunConfig)`). A run directory is the only
state: a run that is interrupted resumes from its last finished task and reaches the same numbers
as an uninterrupted one with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from transformers import set_seed

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import load_stream
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.engine.trainer import train_task
from citkit.errors import ResumeMismatchError
from citkit.eval.evaluator import evaluate_task
from citkit.eval.matrix import AccuracyMatrix
from citkit.eval.metrics import Metrics
from citkit.io import write_json
from citkit.methods import METHODS
from citkit.methods.base import Method
from citkit.models.loading import load_model, load_processor
from citkit.models.registry import resolve_model_path
from citkit.report.plots import plot_matrix
from citkit.report.tables import write_report
from citkit.run_config import RunConfig
from citkit.rundir import RunDirectory, environment

logger = get_logger(__name__)


@dataclass
class RunResult:
    """What a finished (or partly finished) run produced."""

    run_dir: Path
    matrix: AccuracyMatrix
    metrics: Metrics


def adapter_state(model: torch.nn.Module, base_ids: set[int]) -> dict[str, torch.Tensor]:
    """Parameters the run added or trains (adapters, experts, trained projector), by name."""
    return {n: p.detach() for n, p in model.named_parameters() if id(p) not in base_ids or p.requires_grad}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path,
                       base_ids: set[int] | None = None) -> None:
    """Copy a checkpoint's tensors into the rebuilt model. Every checkpoint tensor must exist in the model
    and, given the base model's parameter ids, every parameter the run added must be in the checkpoint."""
    params = dict(model.named_parameters())
    missing = [k for k in state if k not in params]
    if missing:
        raise ResumeMismatchError(f"{where}: checkpoint holds {missing[0]!r}, which the rebuilt model lacks")
    unsaved = [n for n, p in params.items() if base_ids is not None and id(p) not in base_ids and n not in state]
    if unsaved:
        raise ResumeMismatchError(f"{where}: the rebuilt model has {unsaved[0]!r} ({len(unsaved)} such tensors), "
                                  "which the checkpoint lacks")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def evaluate_row(model: torch.nn.Module, method: Method | None, tasks: list[TaskData], config: RunConfig,
                 run_dir: RunDirectory, row: int) -> tuple[dict[str, float], float, int]:
    """Score every task; save predictions; return scores, generation seconds and samples generated."""
    scores, rows, seconds, count = {}, [], 0.0, 0
    for task in tasks:
        result = evaluate_task(model, task, config.eval, method)
        scores[task.name] = result.score
        rows += result.rows(task)
        seconds += result.seconds
        count += len(task.test)
    run_dir.save_predictions(row, rows)
    return scores, seconds, count


def finish(run_dir: RunDirectory, config: RunConfig, matrix: AccuracyMatrix) -> Metrics:
    metrics = matrix.metrics()
    write_json(run_dir.path / "metrics.json", metrics.as_dict())
    write_report(run_dir.path)
    plot_matrix(matrix, run_dir.path / "matrix.png", title=f"{config.method} on {config.stream.name}")
    return metrics


def run(config: RunConfig, stop_after: int | None = None) -> RunResult:
    """Run (or resume) a continual stream. `stop_after` ends after that many finished tasks (tests)."""
    run_dir = RunDirectory(config.run_dir)
    accelerator = Accelerator(mixed_precision=config.train.mixed_precision)
    # Everything that can fail on bad input (data, model path) happens before the first write.
    model_path = resolve_model_path(config.model, Path(config.runs_dir))
    stream = load_stream(config.stream, Path(config.runs_dir) / "_data")
    processor = load_processor(model_path, config.model.trust_remote_code)
    model = load_model(model_path, config.model.dtype, config.model.trust_remote_code, config.model.attn_implementation)
    resuming = run_dir.check_or_write_config(config.identity(), RunConfig(method=config.method).identity())
    run_dir.write_environment(environment(config.seed, str(accelerator.device)))
    names = stream.task_names
    matrix = AccuracyMatrix.load(run_dir.path) if resuming and (run_dir.path / "matrix.json").exists() \
        else AccuracyMatrix.empty(names)
    if matrix.task_names != names:
        raise ResumeMismatchError(f"{run_dir.path}: matrix tasks {matrix.task_names} differ from the stream's {names}")
    model.requires_grad_(False)
    model.to(accelerator.device)
    cache = EncodingCache(SampleEncoder(processor))
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    tasks_log = run_dir.read_tasks_log()

    if matrix.finished_rows == 0:  # row 0: the base model, before any adapter exists
        scores, _, _ = evaluate_row(model, None, tasks, config, run_dir, 0)
        matrix.set_row(0, scores)
        matrix.save(run_dir.path)

    method_cls = METHODS.get(config.method)
    method = method_cls(config.method_config(), config.adapter)
    if not method.trains:  # zero-shot: every row is the base model's
        for row in range(1, len(tasks) + 1):
            matrix.rows[row] = list(matrix.rows[0])
        matrix.save(run_dir.path)
        return RunResult(run_dir.path, matrix, finish(run_dir, config, matrix))

    base_ids = {id(p) for p in model.parameters()}
    set_seed(config.seed)  # fixes the adapter initialisation
    model = method.attach(model)
    done = matrix.finished_rows - 1
    if done > 0:
        model = method.resume(model, names[:done])
        adapter, tensors, extra = run_dir.load_checkpoint(done - 1)
        load_adapter_state(model, adapter, run_dir.checkpoint_dir(done - 1), base_ids)
        method.load_state_dict(tensors)
        method.load_extra_state(extra)
        tasks_log = tasks_log[:done]
        logger.info(f"resuming {run_dir.path} after task {done} ({names[done - 1]})")
    model.to(accelerator.device)

    for index in range(done, len(tasks)):
        task = tasks[index]
        set_seed(config.seed * 1000 + index)
        samples = method.training_samples(task, tasks[:index])
        method.before_task(task, model)
        result = train_task(model, method, task, samples, config.train, accelerator, config.seed * 1000 + index)
        model = accelerator.unwrap_model(model)
        method.after_task(task, model)
        scores, seconds, count = evaluate_row(model, method, tasks, config, run_dir, index + 1)
        run_dir.save_checkpoint(index, adapter_state(model, base_ids), method.state_dict(), method.extra_state())
        tasks_log.append(_task_entry(task.name, result, seconds, count, adapter_state(model, base_ids), method))
        run_dir.write_tasks_log(tasks_log)
        matrix.set_row(index + 1, scores)
        matrix.save(run_dir.path)  # the finished row is the commit point of this task
        logger.info(f"task {index + 1}/{len(tasks)} {task.name}: " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))
        if stop_after is not None and index + 1 >= stop_after and index + 1 < len(tasks):
            return RunResult(run_dir.path, matrix, matrix.metrics())
    return RunResult(run_dir.path, matrix, finish(run_dir, config, matrix))


def _task_entry(name: str, result: Any, eval_seconds: float, eval_samples: int, stored: dict[str, torch.Tensor],
                method: Method) -> dict[str, Any]:
    method_params = sum(t.numel() for t in method.state_dict().values())
    return {"task": name, "steps": result.steps, "train_seconds": result.seconds, "train_samples": result.samples,
            "trainable_parameters": result.trainable_parameters,
            "stored_parameters": sum(t.numel() for t in stored.values()) + method_params,
            "eval_seconds_per_sample": eval_seconds / max(1, eval_samples), "final_loss": result.final_loss,
            "log": result.log}
