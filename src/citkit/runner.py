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
from accelerate.logging import get_logger
from transformers import set_seed

from citkit.data.encoding import SampleEncoder
from citkit.data.samples import Stream
from citkit.data.streams import load_stream
from citkit.data.vocabulary import check_answers
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import DataFormatError, ResumeMismatchError
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


def evaluate_row(model: torch.nn.Module, method: Method | None, tasks: list[TaskData], config: RunConfig,
                 run_dir: RunDirectory, row: int, engine: Engine) -> tuple[dict[str, float], float, int]:
    """Score every task (sharded over processes); the main process saves the predictions. Returns scores,
    generation seconds and samples generated."""
    scores, rows, seconds, count = {}, [], 0.0, 0
    for task in tasks:
        result = evaluate_task(model, task, config.eval, method, accelerator=engine.accelerator)
        scores[task.name] = result.score
        rows += result.rows(task)
        seconds += result.seconds
        count += len(task.test)
    if engine.is_main_process:
        run_dir.save_predictions(row, rows)
    engine.log({f"matrix/after_task_{row}/{name}": value for name, value in scores.items()})
    return scores, seconds, count


def finish(run_dir: RunDirectory, config: RunConfig, matrix: AccuracyMatrix, engine: Engine | None = None) -> Metrics:
    metrics = matrix.metrics()
    if engine is None or engine.is_main_process:
        write_json(run_dir.path / "metrics.json", metrics.as_dict())
        write_report(run_dir.path)
        plot_matrix(matrix, run_dir.path / "matrix.png", title=f"{config.method} on {config.stream.name}")
    if engine is not None:
        engine.log({f"metrics/{k}": v for k, v in metrics.as_dict().items() if isinstance(v, (int, float))})
        engine.end_tracking()
    return metrics


def check_vocabulary(stream: Stream, processor: Any, model: str, allow: bool) -> None:
    """Refuse (or, when allowed, warn about) answers the model's tokenizer cannot represent."""
    report = check_answers((s for task in stream.tasks for s in (*task.train, *task.test)), processor)
    if not report.problems:
        return
    if not allow:
        raise DataFormatError(report.refusal(model))
    logger.warning(f"stream.allow_unknown_tokens: {len(report.problems)} of {report.answers} answers cannot be "
                   f"represented by the tokenizer of {model}; first: {report.problems[0].line()}")


def run(config: RunConfig, stop_after: int | None = None) -> RunResult:
    """Run (or resume) a continual stream. `stop_after` ends after that many finished tasks (tests).

    Under `accelerate launch` every process trains its share of each batch and generates its share of
    each test set; only the main process writes the run directory."""
    run_dir = RunDirectory(config.run_dir)
    engine = Engine(config.train, project_dir=run_dir.path)
    accelerator = engine.accelerator
    main = engine.is_main_process
    # Everything that can fail on bad input (data, model path) happens before the first write.
    model_path = resolve_model_path(config.model, Path(config.runs_dir))
    with accelerator.main_process_first():  # the toy world is exported once, by the main process
        stream = load_stream(config.stream, Path(config.runs_dir) / "_data")
    processor = load_processor(model_path, config.model.trust_remote_code)
    check_vocabulary(stream, processor, str(model_path), config.stream.allow_unknown_tokens)
    model = load_model(model_path, config.model.dtype, config.model.trust_remote_code,
                       config.model.attn_implementation, config.model.quantization)
    with accelerator.main_process_first():
        resuming = run_dir.check_or_write_config(config.identity(), RunConfig(method=config.method).identity())
    if main:
        env = environment(config.seed, str(accelerator.device), accelerator.num_processes)
        env |= {"model": str(model_path), "stream_base_model": stream.metadata.get("base_model", "")}
        run_dir.write_environment(env)
    base = stream.metadata.get("base_model", "")
    if base and Path(base).name != Path(str(model_path)).name and base != config.model.path:
        logger.warning(f"stream {stream.name} is defined on the base model {base} "
                       f"({stream.metadata.get('base_model_note', '')}); this run uses {model_path}")
    engine.start_tracking(config.run_name, config.identity())
    names = stream.task_names
    matrix = AccuracyMatrix.load(run_dir.path) if resuming and (run_dir.path / "matrix.json").exists() \
        else AccuracyMatrix.empty(names)
    if matrix.task_names != names:
        raise ResumeMismatchError(f"{run_dir.path}: matrix tasks {matrix.task_names} differ from the stream's {names}")
    model.requires_grad_(False)
    model.to(accelerator.device)
    cache = EncodingCache(SampleEncoder(processor), max_items=config.stream.cache_items)
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    tasks_log = run_dir.read_tasks_log()

    def commit_row(row: int, scores: dict[str, float]) -> None:
        matrix.set_row(row, scores)
        if main:
            matrix.save(run_dir.path)  # the finished row is the commit point of a task
        accelerator.wait_for_everyone()

    if matrix.finished_rows == 0:  # row 0: the base model, before any adapter exists
        scores, _, _ = evaluate_row(model, None, tasks, config, run_dir, 0, engine)
        commit_row(0, scores)

    method = METHODS.get(config.method)(config.method_config(), config.adapter)
    if not method.trains:  # zero-shot: every row is the base model's
        for row in range(1, len(tasks) + 1):
            commit_row(row, dict(zip(names, matrix.rows[0], strict=True)))
        return RunResult(run_dir.path, matrix, finish(run_dir, config, matrix, engine))

    set_seed(config.seed)  # fixes the adapter initialisation
    model = engine.attach(method, model)
    done = matrix.finished_rows - 1
    if done > 0:
        model = method.resume(model, names[:done])
        trainable, tensors, extra = run_dir.load_checkpoint(done - 1)
        method.load_trainable_state(model, trainable, str(run_dir.checkpoint_dir(done - 1)))
        method.load_state_dict(tensors)
        method.load_extra_state(extra)
        tasks_log = tasks_log[:done]
        engine.global_step = sum(int(entry["steps"]) for entry in tasks_log)
        logger.info(f"resuming {run_dir.path} after task {done} ({names[done - 1]})")
    model.to(accelerator.device)

    for index in range(done, len(tasks)):
        task = tasks[index]
        model, result = engine.fit_task(model, method, task, tasks[:index], seed=config.seed * 1000 + index)
        scores, seconds, count = evaluate_row(model, method, tasks, config, run_dir, index + 1, engine)
        stored = method.trainable_state(model)
        tasks_log.append(_task_entry(task.name, result, seconds, count, stored, method)
                         | {"inference": method.inference_report(tasks, model)})
        if main:
            run_dir.save_checkpoint(index, stored, method.state_dict(), method.extra_state())
            run_dir.write_tasks_log(tasks_log)
        commit_row(index + 1, scores)
        logger.info(f"task {index + 1}/{len(tasks)} {task.name}: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))
        if stop_after is not None and index + 1 >= stop_after and index + 1 < len(tasks):
            engine.end_tracking()
            return RunResult(run_dir.path, matrix, matrix.metrics())
    return RunResult(run_dir.path, matrix, finish(run_dir, config, matrix, engine))


def _task_entry(name: str, result: Any, eval_seconds: float, eval_samples: int, stored: dict[str, torch.Tensor],
                method: Method) -> dict[str, Any]:
    method_params = sum(t.numel() for t in method.state_dict().values())
    return {"task": name, "steps": result.steps, "train_seconds": result.seconds, "train_samples": result.samples,
            "trainable_parameters": result.trainable_parameters,
            "stored_parameters": sum(t.numel() for t in stored.values()) + method_params,
            "eval_seconds_per_sample": eval_seconds / max(1, eval_samples), "final_loss": result.final_loss,
            "log": result.log}
