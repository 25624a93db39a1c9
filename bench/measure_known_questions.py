"""A `toy-mixed` run split in two: its tasks' new-skill questions, and the questions the base already answers.

Every task of `toy-mixed` is a dataset of its domain: about a third of its questions are base-mixture
questions about that domain (which hour a clock shows), the rest the task's new skill (the hour three
hours later). The run's matrix mixes both; this prints the accuracy matrix of each part and its MFT,
MFN and BWT, so partial forgetting can be told apart from a retained base part. Reads only the run
directory's predictions/row_<i>.jsonl files.

    python bench/measure_known_questions.py runs/toy-mixed-lora-ft-seed0
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from citkit.data.toy.domain_tasks import KNOWN_QUESTIONS
from citkit.eval.metrics import bwt, mfn, mft


def known_questions(draws: int = 500) -> dict[str, set[str]]:
    """Every base-mixture question each task's domain is asked (slots filled), by task name."""
    rng = np.random.default_rng(0)
    return {task: {fn(rng)[1] for fn in fns for _ in range(draws)} for task, fns in KNOWN_QUESTIONS.items()}


def split_matrices(run_dir: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Accuracy (%) after each row (0 = base) on each task's skill and known questions."""
    tasks = [t["task"] for t in json.loads((run_dir / "tasks.json").read_text())]
    known = known_questions()
    parts = {part: np.full((len(tasks) + 1, len(tasks)), np.nan) for part in ("skill", "known")}
    for row in range(len(tasks) + 1):
        path = run_dir / "predictions" / f"row_{row}.jsonl"
        if not path.exists():
            continue
        scores: dict[tuple[str, str], list[float]] = defaultdict(list)
        with path.open(encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                question = r["prompt"].split("\n", 1)[-1]
                part = "known" if question in known.get(r["task"], set()) else "skill"
                scores[(part, r["task"])].append(float(r["score"]))
        for (part, task), values in scores.items():
            parts[part][row, tasks.index(task)] = 100 * float(np.mean(values))
    return tasks, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    tasks, parts = split_matrices(parser.parse_args().run_dir)
    for part, matrix in parts.items():
        print(f"\n{part} questions")
        print("| after \\ task | " + " | ".join(tasks) + " |")
        print("|---" * (len(tasks) + 1) + "|")
        for row, values in enumerate(matrix):
            label = "base" if row == 0 else tasks[row - 1]
            print(f"| {label} | " + " | ".join("" if np.isnan(v) else f"{v:.1f}" for v in values) + " |")
        if not np.isnan(matrix).any():
            rows = matrix.tolist()
            print("  ".join(f"{name} {fn(rows):.1f}" for name, fn in (("MFT", mft), ("MFN", mfn), ("BWT", bwt))))


if __name__ == "__main__":
    main()
