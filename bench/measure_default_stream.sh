#!/usr/bin/env bash
# The README's results table: LoRA-FT and Joint on the default toy stream, three seeds.
#   bash bench/measure_default_stream.sh [runs-dir]
set -euo pipefail
RUNS=${1:-runs}
for seed in 0 1 2; do
  for method in lora-ft joint; do
    .venv/bin/citkit run --method "$method" --seed "$seed" --runs-dir "$RUNS" --quiet > /dev/null
  done
done
.venv/bin/python bench/summarize_seeds.py "$RUNS" lora-ft joint
