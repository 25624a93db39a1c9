"""Evaluation sharded over two CPU processes (gloo) against one process, on the same model and prompts.

Prints how many test ids the two processes gathered (each exactly once, none lost), whether every
prediction equals the one-process prediction, and the generation time ratio, measured in one run.

    .venv/bin/python bench/bench_distributed_eval.py [--samples 128]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(stream_dir: str, out: str) -> None:
    """One process of the job: evaluate the caption task of the toy stream, write what it gathered."""
    import torch
    from accelerate import Accelerator

    from citkit.data.encoding import SampleEncoder
    from citkit.data.streams import StreamConfig, load_stream
    from citkit.engine.task_data import EncodingCache, TaskData
    from citkit.eval.evaluator import EvalConfig, evaluate_task
    from citkit.models.loading import load_model, load_processor
    from citkit.models.registry import packaged_tiny_model

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    stream = load_stream(StreamConfig(name=str(Path(stream_dir) / "stream.yaml"), tasks=("caption",)), stream_dir)
    path = packaged_tiny_model()
    task = TaskData(stream.tasks[0], 0, EncodingCache(SampleEncoder(load_processor(path))))
    result = evaluate_task(load_model(path), task, EvalConfig(batch_size=16), accelerator=accelerator)
    if accelerator.is_main_process:
        Path(out).write_text(json.dumps({"predictions": result.predictions, "seconds": result.seconds}))


def launch(processes: int, stream_dir: Path, out: Path) -> float:
    script = [str(Path(__file__).resolve()), "--worker", str(stream_dir), str(out)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(port), *script]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True,
                   env={**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from citkit.data.toy.world import ToyWorldConfig, export

    with tempfile.TemporaryDirectory() as tmp:
        export(ToyWorldConfig(train_per_task=1, test_per_task=args.samples), tmp)
        launch(1, Path(tmp), Path(tmp) / "one.json")
        launch(2, Path(tmp), Path(tmp) / "two.json")
        one = json.loads((Path(tmp) / "one.json").read_text())
        two = json.loads((Path(tmp) / "two.json").read_text())
    ids = list(two["predictions"])
    same = sum(two["predictions"][i] == one["predictions"].get(i) for i in ids)
    print(f"two processes gathered {len(ids)} ids for {args.samples} test samples: {len(set(ids))} distinct, "
          f"{args.samples - len(set(ids) & set(one['predictions']))} lost")
    print(f"predictions equal to one process: {same}/{len(one['predictions'])}")
    print(f"generation seconds: one process {one['seconds']:.2f}, two processes {two['seconds']:.2f} "
          f"(ratio {one['seconds'] / two['seconds']:.2f}x; 1 thread per process)")


if __name__ == "__main__":
    main()
