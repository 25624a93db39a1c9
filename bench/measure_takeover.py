"""How old tasks are forgotten in a finished run: answered in their own answer space, or in the latest task's.

For each row of the accuracy matrix (after task i), and each earlier task j, the share of j's test
predictions that are answers of task i (taken from task i's test answers) and not answers of task j
("taken over"), and the share that are answers of task j (right space, right or wrong). Reads only
the run directory's predictions/row_<i>.jsonl files.

    python bench/measure_takeover.py runs/toy-lora-ft-seed0
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def read_row(path: Path) -> dict[str, list[tuple[str, str]]]:
    by_task: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            by_task[record["task"]].append((record["prediction"], record["answer"]))
    return by_task


def takeover(run_dir: Path) -> list[dict[str, object]]:
    tasks = [t["task"] for t in json.loads((run_dir / "tasks.json").read_text())]
    rows = []
    for i, latest in enumerate(tasks, start=1):
        path = run_dir / "predictions" / f"row_{i}.jsonl"
        if i < 2 or not path.exists():
            continue
        row = read_row(path)
        spaces = {t: {a for _, a in row[t]} for t in tasks}
        old = [p for t in tasks[:i - 1] for p in row[t]]
        foreign = sum(p in spaces[latest] and p not in spaces[t] for t in tasks[:i - 1] for p, _ in row[t])
        own = sum(p in spaces[t] for t in tasks[:i - 1] for p, _ in row[t])
        correct = sum(p == a for p, a in old)
        rows.append({"after": latest, "old samples": len(old), "correct %": 100 * correct / len(old),
                     "own space %": 100 * own / len(old), "latest space %": 100 * foreign / len(old)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    rows = takeover(parser.parse_args().run_dir)
    print("| after | old samples | correct % | own answer space % | latest task's space (not own) % |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['after']} | {r['old samples']} | {r['correct %']:.1f} | {r['own space %']:.1f} | "
              f"{r['latest space %']:.1f} |")


if __name__ == "__main__":
    main()
