"""How well a routed method sends each task's test samples where they belong: the numbers of the run report's
routing table (`Method.inference_report`), shared by every method that mixes experts per sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData

RoutingWeights = Callable[[dict[str, Tensor], nn.Module], Tensor]  # batch -> (batch, experts) weights


@torch.no_grad()
def expert_shares(task: TaskData, weights: RoutingWeights, model: nn.Module, batch_size: int) -> tuple[Tensor, Tensor]:
    """Over `task`'s test prompts, per expert: the % of prompts whose largest weight is on it, and the mean
    weight on it (%); each (experts,)."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    hits: Tensor | None = None
    total: Tensor | None = None
    for start in range(0, len(task.test), batch_size):
        chunk = task.test[start:start + batch_size]
        prompts = task.collate([task.encode_prompt(s) for s in chunk], "left")
        batch = {k: v.to(device) for k, v in prompts.items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(dtype)
        mixed = weights(batch, model).float().cpu()  # (batch, experts)
        counts = torch.bincount(mixed.argmax(1), minlength=mixed.shape[1]).float()
        hits = counts if hits is None else hits + counts
        total = mixed.sum(0) if total is None else total + mixed.sum(0)
    if hits is None or total is None:
        raise ValueError(f"task {task.name!r} has no test sample to route")
    n = len(task.test)
    return 100 * hits / n, 100 * total / n


def routing_accuracy(tasks: list[TaskData], own: dict[str, int], weights: RoutingWeights, model: nn.Module,
                     batch_size: int) -> dict[str, dict[str, float]]:
    """Per task named in `own` (task -> the index of its own expert / slot) that has test samples:
    `argmax`, the % of its test prompts whose largest weight is on that index; `weight`, the mean weight
    there (%); `samples`; and `expert`, the index."""
    report: dict[str, dict[str, float]] = {}
    for task in tasks:
        if task.name not in own or not task.test:
            continue
        index = own[task.name]
        hits, mean = expert_shares(task, weights, model, batch_size)
        report[task.name] = {"argmax": float(hits[index]), "weight": float(mean[index]), "samples": len(task.test),
                             "expert": index}
    return report
