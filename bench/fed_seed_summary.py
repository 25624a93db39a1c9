"""Mean ± sd over run seeds of finished `bench/fed_toy_table.py` rows, and which method leads each setting.

    python bench/fed_toy_table.py --runs-dir runs/fed-toy-mixed-r10 --seed S --only ROWS   # for each seed S
    python bench/fed_seed_summary.py runs/fed-toy-mixed-r10 --seeds 0,1,2 [--only ROWS]

Reads `metrics.json` of `<row>` (seed 0) and `<row>-seedS` (S > 0) in the runs directory and prints one
markdown table (MFT, Last, FCIT Avg, BWT: mean ± sd over the seeds, then each seed's Last), then, per
setting (the row name without its method), the method with the highest Last on each seed. A row
missing a seed's run is an error that names the directory.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from fed_toy_table import ROWS

from citkit.io import read_json


def run_dir(runs: Path, row: str, seed: int) -> Path:
    return runs / (row if seed == 0 else f"{row}-seed{seed}")


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def setting_of(row: str) -> tuple[str, str]:
    """('task-homo-b1', 'disco-all-linear') from 'task-homo-b1-disco-all-linear'."""
    scenario, kind, beta, method = row.split("-", 3)
    return f"{scenario}-{kind}-{beta}", method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="", help="comma-separated row names (default: every row with runs)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    only = [n for n in args.only.split(",") if n] or [r for r in ROWS if run_dir(args.runs_dir, r, 0).is_dir()]
    metrics: dict[str, list[dict]] = {}
    for row in only:
        found = []
        for seed in seeds:
            path = run_dir(args.runs_dir, row, seed) / "metrics.json"
            if not path.exists():
                raise SystemExit(f"{path.parent}: no finished run (metrics.json) for row {row}, seed {seed}; "
                                 f"run bench/fed_toy_table.py --seed {seed} --only {row}")
            found.append(read_json(path))
        metrics[row] = found
    print("| run | MFT | Last (MFN) | FCIT Avg | BWT | Last per seed |")
    print("|---|---|---|---|---|---|")
    for row, runs in metrics.items():
        last = [m["mfn"] for m in runs]
        print(f"| {row} | {mean_sd([m['mft'] for m in runs])} | {mean_sd(last)} | "
              f"{mean_sd([m['fcit_avg'] for m in runs])} | {mean_sd([m['bwt'] for m in runs])} | "
              f"{', '.join(f'{v:.1f}' for v in last)} |")
    print()
    settings: dict[str, list[str]] = {}
    for row in metrics:
        settings.setdefault(setting_of(row)[0], []).append(row)
    for setting, rows in settings.items():
        leaders = [setting_of(max(rows, key=lambda r: metrics[r][i]["mfn"]))[1] for i in range(len(seeds))]
        print(f"- {setting}: highest Last per seed ({', '.join(map(str, seeds))}): {', '.join(leaders)}")


if __name__ == "__main__":
    main()
