"""Score a model on the test sets of a stream's tasks: batched generation, then the task's scorer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from citkit.engine.generation import generate
from citkit.errors import ConfigError
from citkit.eval.scorers import score_task

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData
    from citkit.methods.base import Method


@dataclass(frozen=True)
class EvalConfig:
    """How test sets are scored."""

    batch_size: int = field(default=64, metadata={"help": "Prompts generated together (left-padded)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Override every task's answer length cap."})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class TaskEvaluation:
    """One task's score, its predictions by id and the generation time."""

    task: str
    score: float
    predictions: dict[str, str]
    per_sample: dict[str, float]
    seconds: float

    def rows(self, task: TaskData) -> list[dict[str, object]]:
        """Prediction records joined with their references, by id."""
        return [{"id": s.id, "task": self.task, "prompt": s.prompt, "prediction": self.predictions[s.id],
                 "answer": s.answer, "score": self.per_sample[s.id]} for s in task.test]


def evaluate_task(model: torch.nn.Module, task: TaskData, config: EvalConfig, method: Method | None = None,
                  tokenizer: object | None = None) -> TaskEvaluation:
    """Generate answers for `task`'s test set and score them (joined by sample id)."""
    encoded = [task.encode_prompt(s) for s in task.test]
    route = (lambda batch: method.route(batch, model)) if method is not None else None
    tokenizer = tokenizer or task.tokenizer
    result = generate(model, encoded, tokenizer, config.batch_size, config.max_new_tokens or task.task.max_new_tokens,
                      route=route)
    references = {s.id: s.answers or (s.answer or "",) for s in task.test}
    scores = score_task(task.task.scorer, result.predictions, references, task.name, task.task.test_parts)
    return TaskEvaluation(task.name, scores.score, result.predictions, scores.per_sample, result.seconds)
