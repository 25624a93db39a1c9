"""Where DISCO's inference routing sends each task's test samples, read from a finished federated run.

DISCO mixes its filled subspaces per sample with alpha = activation(cos(feature, token_k) / T), the
feature being the mean frozen instruction embedding (nothing a client trains), so the routing of the
global model after stage s is rebuilt here from the tokens and counts saved in the run's checkpoint of
that stage and the base model's input embeddings. For every stage with a checkpoint the script prints
the samples behind each slot's token, and for each task of the units met so far the share of its test
samples whose largest weight is on each slot and the mean weight on each slot; then, from `rounds.json`,
which slots each stage's clients trained and how many samples each of those clients held.

    .venv/bin/python bench/measure_disco_routing.py runs/fed-toy-mixed-r10/capability-homo-b1-disco-all-linear
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file

from citkit.federated.commands import resume_config
from citkit.federated.federation import Federation
from citkit.io import read_json
from citkit.methods.disco import Disco
from citkit.methods.routing_report import expert_shares
from citkit.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resume_config(args.run_dir, quiet=True)
    if config.run.method != "disco":
        raise SystemExit(f"{args.run_dir} is a {config.run.method} run, not disco")
    federation = Federation(config)
    model = load_model(federation.model_path).requires_grad_(False).eval()
    rounds = read_json(args.run_dir / "rounds.json")
    schedule = federation.schedule
    for stage in range(federation.num_stages):
        folder = args.run_dir / "checkpoints" / f"task_{stage + 1}"
        if not folder.is_dir():
            continue
        method = Disco(config.run.method_config())
        saved = load_file(folder / "method.safetensors")
        method.load_state_dict({k: saved[k] for k in ("tokens", "counts")})
        method.load_extra_state(read_json(folder / "method.json"))
        trained: dict[int, dict[int, int]] = defaultdict(dict)  # slot -> client -> samples held this stage
        samples = federation.client_samples(stage)
        for r in (r for r in rounds if r["stage"] == stage):
            for client, slot in r.get("assignment", {}).items():
                trained[int(slot)][int(client)] = len(samples[int(client)])
        counts = ", ".join(f"{int(c)}" for c in method.counts.tolist())
        print(f"\n## After stage {stage + 1} ({'+'.join(schedule.stages[stage])}); samples behind each slot's "
              f"token: {counts}")
        for slot, clients in sorted(trained.items()):
            held = ", ".join(f"client {c}: {n}" for c, n in sorted(clients.items()))
            print(f"- stage {stage + 1} trained slot {slot} ({held})")
        k = method.config.num_subspaces
        print("\n| task | " + " | ".join(f"slot {j}: argmax / weight" for j in range(k)) + " |")
        print("|---|" + "---|" * k)
        met = [t for u in dict.fromkeys(n for s in schedule.stages[:stage + 1] for n in s)
               for t in schedule.unit(u).tasks]
        for task in (federation.tasks[federation.stream.task_names.index(name)] for name in dict.fromkeys(met)):
            argmax, weight = (v.tolist() for v in expert_shares(task, method.routing_weights, model, 64))
            cells = " | ".join(f"{a:.1f} / {w:.1f}" for a, w in zip(argmax, weight, strict=True))
            print(f"| {task.name} | {cells} |")


if __name__ == "__main__":
    main()
