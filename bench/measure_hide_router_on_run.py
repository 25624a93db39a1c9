"""HiDe-LLaVA's router settings scored on a finished run's experts, without training again.

Each expert trains alone on the frozen base in every block whatever the layout or the router, so one
`layout=expand-all` run holds the experts of every layout. This script restores the run after its last
task and scores every task (the final matrix row; its mean is MFN) for two layouts, the default
hierarchical one (code fusion in every block but the top one, routed top block) and expand-all (every
block routed), under each router setting and under oracle routing.

    python bench/measure_hide_router_on_run.py runs/toy-hide-llava-layout-expand-all-seed0 --samples-per-task 100
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from citkit.analysis.block_test import restore, set_mode
from citkit.eval.evaluator import EvalConfig, evaluate_task
from citkit.methods.hide_llava import HiDeLinear
from citkit.models.families import decoder_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--samples-per-task", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    method, model, tasks, experts = restore(Path(args.run_dir), torch.device("cpu"), oracle=False)
    for task in tasks:
        task.task = replace(task.task, test=task.test[: args.samples_per_task])
    blocks = [[m for m in b.modules() if isinstance(m, HiDeLinear)] for b in decoder_layers(model)]
    layouts = {"hierarchical (code fusion below)": {b: "fused" for b in range(len(blocks) - 1)}, "expand-all": {}}
    routers = [{"oracle_routing": True}] + [{"center_features": c, "image_weight": w}
                                            for c, w in itertools.product((True, False), (0.5, 0.0))]
    print(f"{args.run_dir}: {len(tasks)} tasks, {args.samples_per_task} test samples each")
    print("| layout | router | " + " | ".join(t.name for t in tasks) + " | MFN |")
    print("|---" * (len(tasks) + 3) + "|")
    results = []
    for (layout, modes), router in itertools.product(layouts.items(), routers):
        start = time.perf_counter()
        for b, layers in enumerate(blocks):
            set_mode(layers, modes.get(b, "routed"), experts, "code")
        method.config = replace(method.config, **({"oracle_routing": False} | router))
        scores = {t.name: evaluate_task(model, t, EvalConfig(batch_size=64), method).score for t in tasks}
        mfn = sum(scores.values()) / len(scores)
        label = "oracle" if "oracle_routing" in router else \
            f"center_features={router['center_features']}, image_weight={router['image_weight']}"
        print(f"| {layout} | {label} | " + " | ".join(f"{v:.1f}" for v in scores.values())
              + f" | {mfn:.1f} |  ({time.perf_counter() - start:.0f} s)", flush=True)
        results.append({"layout": layout, "router": router, "scores": scores, "mfn": mfn})
    out = Path(args.run_dir) / "router-settings.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
