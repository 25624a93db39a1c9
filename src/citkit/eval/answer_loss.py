"""How likely the model finds a task's reference answers: the teacher-forced cross-entropy per answer token.

Accuracy only asks whether the greedy answer is right. Two models with the same accuracy can differ in
how sure they are of the answer; this measures that, on the test samples' training form (prompt and
reference answer, labels on the answer tokens), averaged over every answer token of the set.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from citkit.data.samples import Sample, Turn
from citkit.engine.batches import loss_items

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData
    from citkit.methods.base import Method


def answered(sample: Sample) -> Sample:
    """A test sample in training form: its prompt, then its reference answer as the assistant's turn (the
    id is marked, so the encoding cache keeps it apart from a training sample of the same id)."""
    if sample.answer is None:
        raise ValueError(f"{sample.where}: no reference answer to score")
    return replace(sample, id=f"{sample.id}#answered", turns=(*sample.turns, Turn("assistant", sample.answer)),
                   answer=None, answers=())


@torch.no_grad()
def answer_loss(model: torch.nn.Module, task: TaskData, batch_size: int = 64, method: Method | None = None) -> float:
    """Mean cross-entropy (nats) per answer token over `task`'s test samples, with `method`'s routing and
    evaluation context as in `evaluate_task` (a learned router then also reads the answer; the per-block
    test routes by oracle). Each batch's mean is weighted by its answer tokens, so the result does not
    depend on `batch_size`."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    total, tokens = 0.0, 0
    with method.evaluating(task) if method is not None else contextlib.nullcontext():
        for batch in task.batches(batch_size, samples=[answered(s) for s in task.test]):
            batch = {k: v.to(device) for k, v in batch.items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(dtype)
            count = loss_items(batch)
            if count == 0:
                continue
            with method.route(batch, model) if method is not None else contextlib.nullcontext():
                loss = model(**batch).loss
            total += float(loss) * count
            tokens += count
    return total / tokens if tokens else float("nan")
