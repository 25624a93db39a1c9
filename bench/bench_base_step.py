"""Where the base build's time goes: one full fine-tune step of the tiny base on its pretraining mixture.

The build (`citkit model pretrain`) is 5,000 such steps at batch 32 on one torch thread. This prints,
measured in one run on this machine with the packaged recipe's model and mixture:
- milliseconds per step on one thread and on two, and their ratio (what a two-thread build would save);
- token positions per step, padded (what the step computes) and real (what the samples hold);
- the share of the one-thread step spent in matrix products (torch.profiler), i.e. how compute-bound
  the step is: a rearrangement of the same arithmetic cannot save more than the rest;
- the same for like-length batches (`train.group_by_length`, `citkit.engine.length_grouping`): their
  padding and milliseconds per step on one and two threads, as ratios to the shuffled one-thread step,
  and how many of the base tasks a batch mixes (like lengths are mostly one task's template).

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
from citkit.engine.length_grouping import LengthGroupedBatches
from citkit.engine.task_data import EncodingCache, TaskData, token_count
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
        labelled = [(e["name"], s) for e in spec["tasks"]
                    for s in read_train(Path(tmp) / e["train"], Path(tmp) / e["image_root"], e["name"])]
        samples = [s for _, s in labelled]
        mixture = TaskData(Task("base-mixture", samples, [], "exact", 1), 0, EncodingCache(SampleEncoder(processor)))
        encoded = [mixture.encode(s) for s in samples]
    generator = torch.Generator().manual_seed(0)
    batches = [mixture.collate([encoded[i] for i in torch.randperm(len(encoded), generator=generator)[
        :recipe.batch_size].tolist()]) for _ in range(args.steps + 5)]
    grouped = LengthGroupedBatches([token_count(e) for e in encoded], recipe.batch_size,
                                   torch.Generator().manual_seed(0))
    epoch = list(grouped)
    like_length = [mixture.collate([encoded[i] for i in b]) for b in epoch[:args.steps + 5]]
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled_epoch = [order[i:i + recipe.batch_size] for i in range(0, len(order), recipe.batch_size)]

    def tasks_per_batch(kind: list[list[int]]) -> float:
        return sum(len({labelled[i][0] for i in b}) for b in kind) / len(kind)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    model.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def time_steps(kind: list[dict[str, torch.Tensor]], threads: int) -> float:
        torch.set_num_threads(threads)
        for batch in kind[:5]:
            step(batch)
        start = time.perf_counter()
        for batch in kind[5:]:
            step(batch)
        return 1000 * (time.perf_counter() - start) / args.steps

    before = torch.get_num_threads()
    timings = {threads: time_steps(batches, threads) for threads in (1, 2)}
    grouped_timings = {threads: time_steps(like_length, threads) for threads in (1, 2)}
    torch.set_num_threads(1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[5:15]:
            step(batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    torch.set_num_threads(before)
    def positions(kind: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
        padded = sum(b["input_ids"].numel() for b in kind[5:]) / args.steps
        return padded, sum(int(b["attention_mask"].sum()) for b in kind[5:]) / args.steps

    one = timings[1]
    print(f"one thread: {one:.0f} ms/step; two threads: {timings[2]:.0f} ms/step (ratio {timings[2] / one:.2f})")
    padded, real = positions(batches)
    print(f"token positions per step: {padded:.0f} computed, {real:.0f} real ({1 - real / padded:.0%} padding)")
    print(f"matrix products: {matmul / total:.0%} of the one-thread step's operator time")
    padded, real = positions(like_length)
    print(f"like-length batches: {padded:.0f} positions computed, {real:.0f} real ({1 - real / padded:.0%} padding); "
          f"one thread {grouped_timings[1]:.0f} ms/step (ratio {grouped_timings[1] / one:.2f}), two threads "
          f"{grouped_timings[2]:.0f} ms/step (ratio {grouped_timings[2] / one:.2f})")
    print(f"base tasks per batch over an epoch: {tasks_per_batch(shuffled_epoch):.1f} shuffled, "
          f"{tasks_per_batch(epoch):.1f} like-length (of {len(spec['tasks'])})")


if __name__ == "__main__":
    main()
