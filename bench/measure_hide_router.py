"""HiDe-LLaVA's router on a stream, without training: how often it picks each test sample's own task.

The anchors and the routing features come from parts no method trains (the vision tower and the input
embeddings), so the router of a run after task t is the router built here from the first t tasks'
training samples. For each router setting the script prints, after every task t, the share of the
trained tasks' test samples whose largest weight is on their own task (argmax) and the mean weight
on it, and the mean of both over the rows.

    python bench/measure_hide_router.py --stream toy --runs-dir runs
    python bench/measure_hide_router.py --stream toy-shared --set image_weight=0.5 --set center_features=false
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from citkit.config import from_dict, parse_override
from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.methods.hide_llava import HiDeConfig, HiDeLLaVA
from citkit.models.loading import ModelConfig, load_model, load_processor
from citkit.models.registry import resolve_model_path


def measure(config: HiDeConfig, model: torch.nn.Module, tasks: list[TaskData]) -> list[dict[str, float]]:
    """Per row t = 1..T: mean argmax accuracy and mean true-task weight (%) over the trained tasks."""
    method = HiDeLLaVA(config)
    rows = []
    for task in tasks:
        method._remember_tokens(task, model)
        image, text = method._anchors(task, model)
        method.image_anchors.append(image)
        method.text_anchors.append(text)
        method.tasks.append(task.name)
        routing = method.inference_report(tasks, model)["routing"]
        rows.append({"argmax": sum(r["argmax"] for r in routing.values()) / len(routing),
                     "weight": sum(r["weight"] for r in routing.values()) / len(routing),
                     "last_task_argmax": routing[task.name]["argmax"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="toy")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--set", action="append", default=[], help="fixed HiDe option, e.g. image_feature=mean")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fixed = dict((parse_override(s)[0][0], parse_override(s)[1]) for s in args.set)
    stream = load_stream(StreamConfig(name=args.stream), Path(args.runs_dir) / "_data")
    path = resolve_model_path(ModelConfig(path=args.model), Path(args.runs_dir))
    model = load_model(path).requires_grad_(False).eval()
    cache = EncodingCache(SampleEncoder(load_processor(path)))
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    print(f"stream {stream.name}: {len(tasks)} tasks, {sum(len(t.test) for t in tasks)} test samples; model {path}")
    print("| center_features | image_weight | argmax after last task | weight after last task | "
          "argmax, mean of rows | weight, mean of rows |")
    print("|---|---|---|---|---|---|")
    results = []
    for center, image_weight in itertools.product((True, False), (0.5, 0.0)):
        options = {"center_features": center, "image_weight": image_weight} | fixed
        start = time.perf_counter()
        rows = measure(from_dict(HiDeConfig, options), model, tasks)
        last = rows[-1]
        mean_argmax = sum(r["argmax"] for r in rows) / len(rows)
        mean_weight = sum(r["weight"] for r in rows) / len(rows)
        print(f"| {options['center_features']} | {options['image_weight']} | {last['argmax']:.1f} | "
              f"{last['weight']:.1f} | {mean_argmax:.1f} | {mean_weight:.1f} |  ({time.perf_counter() - start:.0f} s)")
        results.append({"options": options, "rows": rows})
    out = Path(args.runs_dir) / f"hide-router-{stream.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
