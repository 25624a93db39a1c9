"""HiDe-LLaVA inference against a single LoRA on the tiny model: seconds per sample and their ratio.

HiDe after T tasks runs the materialised fusion (one rank-r LoRA) in every layer but the top one,
T routed experts in the top layer, and one extra vision-tower + embedding pass per batch for the
routing features. The goal is at most 1.3x the time of one LoRA (peft). Both models generate the
same tokens (the experts' B start at zero, like a fresh LoRA's), so the work compared is the same.

    .venv/bin/python bench/bench_hide_inference.py [--tasks 6] [--samples 32] [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.world import ToyDraw
from citkit.engine.generation import generate
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.hide_llava import HiDeConfig, HiDeLLaVA
from citkit.models.loading import load_model, load_processor
from citkit.models.lora import AdapterConfig, add_lora
from citkit.models.registry import packaged_tiny_model


def best_seconds(model, encoded, tokenizer, batch_size, max_new_tokens, repeats, route=None):  # type: ignore[no-untyped-def]
    runs = [generate(model, encoded, tokenizer, batch_size, max_new_tokens, route=route) for _ in range(repeats)]
    return min(r.seconds for r in runs), runs[0].predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6, help="trained tasks (experts) HiDe routes over")
    parser.add_argument("--samples", type=int, default=32, help="test prompts per task")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = packaged_tiny_model()
    processor = load_processor(path)
    with tempfile.TemporaryDirectory() as tmp:
        stream = load_stream(StreamConfig(name="toy", toy=ToyDraw(train_per_task=32, test_per_task=args.samples)),
                             Path(tmp))
        cache = EncodingCache(SampleEncoder(processor))
        tasks = [TaskData(t, i, cache) for i, t in enumerate(stream.tasks)][: args.tasks]
        encoded = [cache.prompt(s) for t in tasks for s in t.test]  # a mixed batch of every task
        for t in tasks:  # encode the anchor samples while the images exist
            [cache.train(s) for s in t.train]

        lora = add_lora(load_model(path).requires_grad_(False), AdapterConfig()).eval()
        hide = HiDeLLaVA(HiDeConfig())
        hide_model = hide.attach(load_model(path).requires_grad_(False))
        for task in tasks:  # experts and anchors of T tasks (no training: the cost does not depend on values)
            hide.before_task(task, hide_model)
            hide.after_task(task, hide_model)
        hide_model.eval()

    tokenizer = processor.tokenizer
    generate(lora, encoded[:8], tokenizer, 8, args.max_new_tokens)  # warm-up
    generate(hide_model, encoded[:8], tokenizer, 8, args.max_new_tokens, route=lambda b: hide.route(b, hide_model))
    lora_s, lora_pred = best_seconds(lora, encoded, tokenizer, args.batch_size, args.max_new_tokens, args.repeats)
    hide_s, hide_pred = best_seconds(hide_model, encoded, tokenizer, args.batch_size, args.max_new_tokens,
                                     args.repeats, route=lambda b: hide.route(b, hide_model))
    n = len(encoded)
    same = sum(lora_pred[k] == hide_pred[k] for k in lora_pred)
    print(f"{n} prompts from {len(tasks)} tasks, batch {args.batch_size}, up to {args.max_new_tokens} new tokens")
    print(f"single LoRA (peft):          {1000 * lora_s / n:.2f} ms/sample")
    print(f"HiDe-LLaVA ({len(tasks)} experts, routed): {1000 * hide_s / n:.2f} ms/sample")
    print(f"ratio HiDe / LoRA = {hide_s / lora_s:.2f}x (goal <= 1.3x); identical predictions: {same}/{n}")


if __name__ == "__main__":
    main()
