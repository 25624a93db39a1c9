"""Peak tensor memory of the EWC importance pass on the tiny model, measured with torch's profiler.

Bound stated and tested: over a whole task, the pass's peak live CPU tensor bytes stay below

    peak of the largest ONE batch's forward + gradient  +  2 x (4 bytes x trainable parameters)  +  64 KiB,

that is one batch's activations and gradients, the float32 running sums, the final means, and
allocator slack. It does not grow with the number of batches: the test also builds the
naive pass (all losses summed, then one gradient), which must break the same bound.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from citkit.engine.task_data import TaskData
from citkit.methods._importance import fisher_diagonal, task_loss, trainable_parameters
from citkit.models.lora import AdapterConfig, add_lora


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """Peak of live CPU tensor bytes allocated while `fn` runs (allocations minus frees, in time order)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                     if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak


def test_peak_tensor_bytes_counts_live_allocations() -> None:
    def five_then_two() -> None:
        blocks = [torch.ones(250_000) for _ in range(5)]  # 5 x 1 MB alive together
        del blocks
        torch.ones(500_000)  # 2 MB

    assert 5_000_000 <= peak_tensor_bytes(five_then_two) < 5_100_000


def test_importance_peak_memory_does_not_grow_with_batches(tiny_model: torch.nn.Module,
                                                           toy_tasks: list[TaskData]) -> None:
    model = add_lora(tiny_model, AdapterConfig())
    task = toy_tasks[4]  # captions: the longest answers of the toy world
    params = list(trainable_parameters(model).values())
    batches = list(task.batches(2))  # 16 batches, collated before measuring
    state_bytes = 4 * sum(p.numel() for p in params)

    def one_batch(batch: dict[str, torch.Tensor]) -> Callable[[], object]:
        return lambda: torch.autograd.grad(task_loss(model, batch), params)

    def naive_pass() -> None:  # every batch's graph alive until one final gradient
        losses = [task_loss(model, batch) for batch in batches]
        torch.autograd.grad(torch.stack(losses).sum(), params)

    model.eval()
    single = max(peak_tensor_bytes(one_batch(batch)) for batch in batches)  # the largest batch
    bound = single + 2 * state_bytes + 65_536
    chunked = peak_tensor_bytes(lambda: fisher_diagonal(model, batches))
    naive = peak_tensor_bytes(naive_pass)
    print(f"one batch {single:,} B, importance state {state_bytes:,} B, bound {bound:,} B; "
          f"chunked pass {chunked:,} B, naive pass {naive:,} B")
    assert chunked <= bound
    assert naive > bound  # the bound would catch a pass that keeps every batch's graph
