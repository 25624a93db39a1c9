"""Batched evaluation (left padding, KV cache) against one-sample-at-a-time generation.

Prints samples/s of both and the speed-up (goal >= 8x), measured in one run on this machine.

    .venv/bin/python bench/bench_batched_eval.py [--samples 192] [--batch-size 64]
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
from citkit.models.loading import load_model, load_processor
from citkit.models.lora import AdapterConfig, add_lora
from citkit.models.registry import packaged_tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = packaged_tiny_model()
    processor = load_processor(path)
    model = add_lora(load_model(path).requires_grad_(False), AdapterConfig()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        stream = load_stream(StreamConfig(name="toy", toy=ToyDraw(train_per_task=1, test_per_task=args.samples)),
                             Path(tmp))
        encoder = SampleEncoder(processor)
        task = stream.tasks[4]  # captions: the longest answers
        encoded = [encoder.encode_prompt(s) for s in task.test]
    generate(model, encoded[:8], processor.tokenizer, 8, task.max_new_tokens)  # warm-up
    batched = generate(model, encoded, processor.tokenizer, args.batch_size, task.max_new_tokens)
    single = generate(model, encoded, processor.tokenizer, 1, task.max_new_tokens)
    same = sum(batched.predictions[k] == single.predictions[k] for k in single.predictions)
    n = len(encoded)
    print(f"batched (batch {args.batch_size}): {n / batched.seconds:.1f} samples/s")
    print(f"one at a time: {n / single.seconds:.1f} samples/s")
    print(f"speed-up = {single.seconds / batched.seconds:.1f}x (goal >= 8x); identical predictions: {same}/{n}")


if __name__ == "__main__":
    main()
