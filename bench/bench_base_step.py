"""Where the base build's time goes: one full fine-tune step of the tiny base on its pretraining mixture.

The build (`citkit model pretrain`) is 5,000 such steps at batch 32 on one torch thread. This prints,
measured in one run on this machine with the packaged recipe's model and mixture:
- milliseconds per step on one thread and on two, and their ratio (what a two-thread build would save);
- token positions per step, padded (what the step computes) and real (what the samples hold);
- the share of the one-thread step spent in matrix products (torch.profiler), i.e. how compute-bound
  the step is: a rearrangement of the same arithmetic cannot save more than the rest.

    .venv/bin/python bench/bench_base_step.py [--steps 30] [--per-task 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import set_seed

from citkit.data.encoding import SampleEncoder
from citkit.data.llava_format import read_train
from citkit.data.samples import Task
from citkit.data.streams import read_stream_file
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.models.pretrain import WORLDS, PretrainConfig
from citkit.models.tiny import build_model, build_processor
from citkit.models.tiny_tokenizer import train_byte_tokenizer, world_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per thread count (after 5 warm-up steps)")
    parser.add_argument("--per-task", type=int, default=300, help="mixture samples drawn per base task")
    args = parser.parse_args()
    recipe = PretrainConfig()
    set_seed(recipe.seed)
    processor = build_processor(train_byte_tokenizer(world_corpus(recipe.seed), recipe.vocab_size))
    model = build_model(recipe.model, processor.tokenizer)
    model.model.vision_tower.requires_grad_(False)  # as in the build's second stage
    with tempfile.TemporaryDirectory() as tmp:
        spec = read_stream_file(export(ToyWorldConfig(WORLDS[recipe.world][0], args.per_task, 1, recipe.seed), tmp))
        samples = [s for e in spec["tasks"]
                   for s in read_train(Path(tmp) / e["train"], Path(tmp) / e["image_root"], e["name"])]
        mixture = TaskData(Task("base-mixture", samples, [], "exact", 1), 0, EncodingCache(SampleEncoder(processor)))
        encoded = [mixture.encode(s) for s in samples]
    generator = torch.Generator().manual_seed(0)
    batches = [mixture.collate([encoded[i] for i in torch.randperm(len(encoded), generator=generator)[
        :recipe.batch_size].tolist()]) for _ in range(args.steps + 5)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    model.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    before = torch.get_num_threads()
    timings = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in batches[:5]:
            step(batch)
        start = time.perf_counter()
        for batch in batches[5:]:
            step(batch)
        timings[threads] = 1000 * (time.perf_counter() - start) / args.steps
    torch.set_num_threads(1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[5:15]:
            step(batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    torch.set_num_threads(before)
    padded = sum(b["input_ids"].numel() for b in batches[5:]) / args.steps
    real = sum(int(b["attention_mask"].sum()) for b in batches[5:]) / args.steps
    print(f"one thread: {timings[1]:.0f} ms/step; two threads: {timings[2]:.0f} ms/step "
          f"(ratio {timings[2] / timings[1]:.2f})")
    print(f"token positions per step: {padded:.0f} computed, {real:.0f} real ({1 - real / padded:.0%} padding)")
    print(f"matrix products: {matmul / total:.0%} of the one-thread step's operator time")


if __name__ == "__main__":
    main()
