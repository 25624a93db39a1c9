"""Pure math shared by the regularisation methods (EWC, MAS, TIR): importances and penalties.

Importances are dicts `parameter name -> tensor of the parameter's shape`, over the trainable
(adapter) parameters only, so their memory grows with the adapter, not with the model. They are
accumulated one batch at a time: at any moment one batch's graph is alive plus one running sum per
parameter, however many batches the task has. Gradients come from `torch.autograd.grad`, never
`backward()`, so the `.grad` fields the engine's optimizer reads are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from citkit.data.encoding import IGNORE_INDEX
from citkit.errors import ConfigError

Batch = dict[str, Tensor]
Merge = Literal["sum", "max"]


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The module inside a (Distributed)DataParallel wrapper, so parameter names carry no `module.`."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that require gradients, by name (names as in `snapshot_trainable`)."""
    return {n: p for n, p in unwrap_parallel(model).named_parameters() if p.requires_grad}


def answer_logit_mask(labels: Tensor) -> Tensor:
    """(batch, seq) bool: positions whose logits predict an answer token (labels shifted by one, as CE)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def accumulate_importance(model: nn.Module, batches: Iterable[Batch],
                          objective: Callable[[nn.Module, Batch], Tensor],
                          transform: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
    """Sample-weighted mean over batches of `transform(d objective / d theta)`, one batch at a time.

    Each batch's gradient is taken with `torch.autograd.grad`, transformed and added, weighted by the
    batch's sample count, to one float32 running sum per parameter; the batch's graph is then freed
    before the next batch is drawn. Peak memory: the running sums (the size of the trainable
    parameters) plus one batch's activations, whatever the number of batches.
    """
    params = trainable_parameters(model)
    if not params:
        raise ConfigError("importance needs trainable parameters; attach an adapter before after_task")
    names, tensors = list(params), list(params.values())
    sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    device, count = tensors[0].device, 0
    was_training = model.training
    model.eval()  # no dropout: the importance of a parameter should not depend on a random mask
    try:
        with torch.enable_grad():
            for batch in batches:
                size = int((batch["labels"] if "labels" in batch else batch["input_ids"]).shape[0])  # samples
                value = objective(model, _to_device(batch, device))
                grads = torch.autograd.grad(value, tensors, allow_unused=True)
                del value  # frees this batch's graph before the next batch is drawn
                for name, grad in zip(names, grads, strict=True):
                    if grad is not None:
                        sums[name].add_(transform(grad.detach().float()), alpha=size)
                count += size
    finally:
        model.train(was_training)
    if count == 0:
        raise ConfigError("importance over an empty task: it has no training batch")
    return {n: s / count for n, s in sums.items()}


def task_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean cross-entropy on the answer tokens (the model's own LM loss)."""
    return model(**batch).loss


def fisher_diagonal(model: nn.Module, batches: Iterable[Batch]) -> dict[str, Tensor]:
    """Diagonal empirical Fisher: mean squared gradient of the task loss (Kirkpatrick et al. 2017).

    The gradient is that of each batch's mean loss: batches of one sample give the per-sample
    empirical Fisher of the paper; larger batches give a cheaper estimate that averages per-sample
    gradients before squaring, hence smaller (cancelling gradients no longer count)."""
    return accumulate_importance(model, batches, task_loss, torch.square)


def output_norm(model: nn.Module, batch: Batch, positions: Literal["answer", "all"] = "answer") -> Tensor:
    """Mean over samples and positions of ||logits||^2 (MAS's label-free objective)."""
    labels = batch.get("labels")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits  # (batch, seq, vocab)
    if positions == "answer" and labels is not None:
        mask = answer_logit_mask(labels)
    else:
        mask = inputs["attention_mask"].bool()
    squared = logits.float().square().sum(-1)  # (batch, seq)
    return (squared * mask).sum() / mask.sum().clamp(min=1)


def output_sensitivity(model: nn.Module, batches: Iterable[Batch],
                       positions: Literal["answer", "all"] = "answer") -> dict[str, Tensor]:
    """MAS importance (Aljundi et al. 2018): mean |d ||logits||^2 / d theta| over the task's data."""
    return accumulate_importance(model, batches, lambda m, b: output_norm(m, b, positions), torch.abs)


def normalize_importance(importance: dict[str, Tensor]) -> dict[str, Tensor]:
    """Scale so that all entries together (over every parameter) sum to one, as He et al. 2023 do."""
    total = sum(float(v.sum()) for v in importance.values())
    if total <= 0:
        return {n: v.clone() for n, v in importance.items()}
    return {n: v / total for n, v in importance.items()}


def merge_importance(old: dict[str, Tensor], old_owner: dict[str, Tensor], new: dict[str, Tensor],
                     task_index: int, how: Merge = "sum") -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Combine a finished task's importance with the stored one; return (importance, owner).

    `owner` holds, per entry, the index of the task that supplied it (int16). With "max" the owner
    is the task whose importance is kept. With "sum" it is the task that contributed more than all
    earlier tasks together when it was added (the majority contributor; the first task otherwise).
    Entries are compared with strict `>`, so ties keep the older owner.
    """
    if how not in ("sum", "max"):
        raise ConfigError(f"importance merge {how!r} is unknown; use 'sum' or 'max'")
    importance = {n: v for n, v in old.items() if n not in new}  # parameters this task did not train
    owner = {n: o for n, o in old_owner.items() if n not in new}
    for name, value in new.items():
        if name not in old:
            importance[name] = value.clone()
            owner[name] = torch.full(value.shape, task_index, dtype=torch.int16, device=value.device)
            continue
        previous, previous_owner = old[name].to(value.device), old_owner[name].to(value.device)
        importance[name] = previous + value if how == "sum" else torch.maximum(previous, value)
        index = torch.tensor(task_index, dtype=torch.int16, device=value.device)
        owner[name] = torch.where(value > previous, index, previous_owner)
    return importance, owner


def scale_by_owner(importance: dict[str, Tensor], owner: dict[str, Tensor],
                   similarity: Tensor) -> dict[str, Tensor]:
    """TIR step 3: multiply each entry by (1 - similarity[owner]); `similarity` is (num_old_tasks,)."""
    keep = (1.0 - similarity.float()).clamp(min=0.0)
    return {n: v * keep.to(v.device)[owner[n].long()] for n, v in importance.items()}


def quadratic_penalty(model: nn.Module, anchor: dict[str, Tensor], importance: dict[str, Tensor]) -> Tensor:
    """sum_i I_i (theta_i - theta*_i)^2 over the entries of `importance` (without the lambda/2)."""
    params = trainable_parameters(model)
    terms: list[Tensor] = []
    for name, weight in importance.items():
        if name not in params:
            raise ConfigError(f"importance names parameter {name!r}, which the model does not train; "
                              "the adapter layout changed since the importance was computed")
        param = params[name]
        terms.append((weight * (param.float() - anchor[name].float()).square()).sum())
    if not terms:
        device = next(iter(params.values())).device if params else torch.device("cpu")
        return torch.zeros((), device=device)
    return torch.stack(terms).sum()


def to_devices_of(model: nn.Module, tensors: dict[str, Any]) -> dict[str, Any]:
    """Move each tensor to the device of the parameter of the same name."""
    params = trainable_parameters(model)
    return {n: t.to(params[n].device) if n in params else t for n, t in tensors.items()}
