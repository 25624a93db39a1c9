"""Engine training throughput against a bare peft + torch loop, on the same model and batches.

Prints samples/s of both and their ratio (goal >= 0.95), measured in one run on this machine. Both
accumulate `--grad-accum` micro-batches per optimizer step (the bare loop divides each loss by k; the
engine weights micro-batches by answer tokens, which is exact).

    .venv/bin/python bench/bench_train_throughput.py [--steps 150] [--batch-size 16] [--grad-accum 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import set_seed

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.world import ToyDraw
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.lora_ft import LoRAFineTuning
from citkit.models.loading import load_model, load_processor
from citkit.models.lora import AdapterConfig, add_lora
from citkit.models.registry import packaged_tiny_model


def bare_loop(model: torch.nn.Module, task: TaskData, batch_size: int, steps: int, lr: float, accum: int) -> float:
    """The plainest LoRA loop: shuffled collated batches, forward, backward (loss / k, k micro-batches),
    clip, AdamW step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    generator = torch.Generator().manual_seed(0)
    batches = task.batches(batch_size, generator=generator)
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(accum):
            batch = next(batches, None)
            if batch is None:  # next epoch
                batches = task.batches(batch_size, generator=generator)
                batch = next(batches)
            loss = model(**batch).loss / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = packaged_tiny_model()
    processor = load_processor(path)
    with tempfile.TemporaryDirectory() as tmp:
        stream = load_stream(StreamConfig(name="toy", toy=ToyDraw(train_per_task=400, test_per_task=1)),
                             Path(tmp))
        cache = EncodingCache(SampleEncoder(processor))
        task = TaskData(stream.tasks[0], 0, cache)
        samples = task.train
        for s in samples:
            cache.train(s)  # encode once, outside both timings
        config = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                             progress=False, warmup_ratio=0.0)
        engine_times, bare_times = [], []
        for _ in range(args.repeats):  # interleave so drift in machine load hits both alike
            set_seed(0)
            engine = Engine(config, cpu=True)
            method = LoRAFineTuning(adapter=AdapterConfig())
            model = engine.attach(method, load_model(path))
            engine_times.append(engine.train(model, method, task.source(samples), task.name, 0).seconds)
            set_seed(0)
            model = load_model(path)
            model.requires_grad_(False)
            model = add_lora(model, AdapterConfig())
            bare_times.append(bare_loop(model, task, args.batch_size, args.steps, config.lr, args.grad_accum))
    engine, bare = min(engine_times), min(bare_times)
    samples_done = args.steps * args.batch_size * args.grad_accum
    print(f"engine: {samples_done / engine:.0f} samples/s ({args.steps / engine:.1f} steps/s)")
    print(f"bare peft + torch loop: {samples_done / bare:.0f} samples/s ({args.steps / bare:.1f} steps/s)")
    print(f"ratio engine / bare = {bare / engine:.3f} "
          f"(goal >= 0.95; best of {args.repeats}; grad_accum {args.grad_accum})")


if __name__ == "__main__":
    main()
