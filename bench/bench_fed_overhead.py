"""The in-process federated runner's per-round cost against calling the engine directly for the same work.

    python bench/bench_fed_overhead.py [--rounds 4] [--clients 10] [--per-round 3]

One stage of the toy stream, LoRA-FT, FedAvg. The Flower side is `citkit.federated.run` (ServerApp main,
Flower FedAvg strategy, in-process Grid: messages, ArrayRecords, a deep copy per node, client state in
Flower Contexts), timed per round from `rounds.json`. The direct side does the same client work with no
Flower: for the same sampled clients and seeds, load the global tensors, `Engine.fit_task` on the client's
data, and average the payloads with torch. Both sides run in this process with one torch thread; the
ratio (goal <= 1.2) and the largest difference between the two global models are printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from citkit.config import from_dict
from citkit.data.streams import StreamConfig, load_stream
from citkit.federated import FedRunConfig
from citkit.federated import run as fed_run
from citkit.federated.federation import ClientWorker, Federation, full_state
from citkit.io import load_tensors, read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--train-per-task", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = Path(tempfile.mkdtemp(prefix="fed-overhead-"))
    toy = {"train_per_task": args.train_per_task, "test_per_task": 8}
    first_task = load_stream(from_dict(StreamConfig, {"toy": toy}), runs / "_data").task_names[0]
    config = from_dict(FedRunConfig, {
        "run": {"method": "lora-ft", "runs_dir": str(runs), "name": "flower",
                "stream": {"toy": toy, "tasks": [first_task]}, "train": {"progress": False}},
        "federated": {"num_clients": args.clients, "clients_per_round": args.per_round,
                      "rounds_per_stage": args.rounds}})
    result = fed_run(config)
    rounds = read_json(result.run_dir / "rounds.json")
    flower = [r["seconds"] for r in rounds]

    federation = Federation(config)
    worker = ClientWorker(federation)
    state = full_state(worker.method, worker.prepare(0))
    direct = []
    for r in rounds:
        start = time.perf_counter()
        results = [(worker.train(c, 0, r["round"], state, None, {}), c) for c in r["clients"]]
        total = sum(res.samples for res, _ in results)
        averaged = {k: sum(res.payload[k] * (res.samples / total) for res, _ in results) for k in results[0][0].payload}
        state = {k: averaged.get(k, v) for k, v in state.items()}
        direct.append(time.perf_counter() - start)
    saved = load_tensors(result.run_dir / "checkpoints" / "task_1" / "adapter.safetensors")
    difference = max(float((saved[k] - state[k]).abs().max()) for k in state)
    per_flower, per_direct = sum(flower) / len(flower), sum(direct) / len(direct)
    print(f"{args.rounds} rounds, {args.per_round} of {args.clients} clients per round, toy task {first_task!r}, "
          f"{args.train_per_task} samples")
    listed = lambda values: ", ".join(f"{s:.2f}" for s in values)  # noqa: E731
    print(f"in-process Flower runner: {per_flower:.3f} s per round (rounds: {listed(flower)})")
    print(f"engine called directly:   {per_direct:.3f} s per round (rounds: {listed(direct)})")
    print(f"ratio {per_flower / per_direct:.3f} (goal <= 1.2); largest difference of the global models "
          f"{difference:.2e}")


if __name__ == "__main__":
    main()
