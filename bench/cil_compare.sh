#!/usr/bin/env bash
# The class-incremental tables of the README: every method, DESIRE's ablations, 3 seeds, built-in and digits
# streams, one torch thread. Finished runs are reused, so a second call only rebuilds the tables and plots.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
METHODS=lora-ft,joint,simplecil,slca,desire,desire:merge=none,desire:refine=false,desire:merge=average
METHODS=$METHODS,desire:calibration.stability_scale=old_tasks,ewc,lwf,o-lora,inflora,sd-lora
export OMP_NUM_THREADS=1
for DATASET in builtin digits; do
  .venv/bin/citkit cil compare --methods "$METHODS" --seeds 0,1,2 --dataset "$DATASET" --runs-dir "$RUNS" --quiet
done
