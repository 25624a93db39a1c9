"""Mean and spread of each method's metrics over the seeds found in a runs folder.

    .venv/bin/python bench/summarize_seeds.py runs lora-ft joint
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main() -> None:
    runs, methods = Path(sys.argv[1]), sys.argv[2:]
    keys = ["mft", "mfn", "maa", "bwt", "forgetting", "fwt"]
    print("| method | seeds | " + " | ".join(k.upper() for k in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for method in methods:
        found = sorted(runs.glob(f"toy-{method}-seed*/metrics.json"))
        rows = [json.loads(p.read_text()) for p in found]
        cells = []
        for k in keys:
            values = [r[k] for r in rows if r[k] is not None]
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread}" if values else "n/a")
        print(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
