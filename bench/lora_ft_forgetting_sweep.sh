#!/usr/bin/env bash
# How LoRA-FT's forgetting on a toy stream moves with the training recipe and the adapter's size
# (seed 0): learning rate, epochs per task, LoRA rank (alpha = 2r, so the update's scale stays),
# and LoRA on q/v only, around lr 2e-3 (the default until 2026-12-07; a setting without its own lr runs
# at 2e-3). Prints one table: MFT, MFN, BWT and BWT / MFT (the share of what was
# learned that is forgotten). Finished runs are reused.
#   bash bench/lora_ft_forgetting_sweep.sh [runs-dir] [stream]
set -euo pipefail
RUNS=${1:-runs}
STREAM=${2:-toy}
SEED=0
declare -A SETTINGS=(
  [lr2e-3]=""
  [lr1e-3]="train.lr=0.001"
  [lr5e-4]="train.lr=0.0005"
  [lr5e-4-ep6]="train.lr=0.0005 train.epochs=6"
  [ep1]="train.epochs=1"
  [lr1e-3-ep1]="train.lr=0.001 train.epochs=1"
  [rank2]="adapter.rank=2 adapter.alpha=4"
  [rank1]="adapter.rank=1 adapter.alpha=2"
  [qv]="adapter.target_modules=[q_proj,v_proj]"
)
ORDER="lr2e-3 lr1e-3 lr5e-4 lr5e-4-ep6 ep1 lr1e-3-ep1 rank2 rank1 qv"
for name in $ORDER; do
  args=()
  for s in ${SETTINGS[$name]}; do args+=(--set "$s"); done
  [[ "${SETTINGS[$name]}" == *train.lr=* ]] || args+=(--set train.lr=0.002)
  .venv/bin/citkit run --quiet --stream "$STREAM" --method lora-ft --seed "$SEED" --runs-dir "$RUNS" \
    --name "sweep-$STREAM-lora-ft-$name-seed$SEED" "${args[@]}" > /dev/null
done
.venv/bin/python - "$RUNS" "$STREAM" "$SEED" $ORDER <<'PY'
import json, sys
from pathlib import Path
runs, stream, seed, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
print("| setting | MFT | MFN | BWT | BWT / MFT |")
print("|---|---|---|---|---|")
for name in names:
    m = json.loads((runs / f"sweep-{stream}-lora-ft-{name}-seed{seed}" / "metrics.json").read_text())
    print(f"| {name} | {m['mft']:.1f} | {m['mfn']:.1f} | {m['bwt']:.1f} | {m['bwt'] / m['mft']:.2f} |")
PY
