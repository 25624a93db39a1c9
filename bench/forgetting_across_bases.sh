#!/usr/bin/env bash
# How much the default world's properties depend on the base build: zero-shot MFN and LoRA-FT's BWT
# over seeds 0-2 on each given base model folder (built with `citkit model pretrain --out DIR
# [--steps N] [--seed S]`, or `pretrain_tiny(..., threads=N)` from citkit.models.pretrain), with the
# default training recipe unless settings are given. Finished runs are reused; one torch thread per run.
#   bash bench/forgetting_across_bases.sh RUNS_DIR BASE_DIR [BASE_DIR ...] [-- --set NAME=VALUE ...]
# Prints one row per base: its gate mean (quality.json), zero-shot MFN, LoRA-FT's mean MFT and MFN, and its
# BWT per seed with mean ± sd.
set -euo pipefail
RUNS=$1; shift
BASES=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do BASES+=("$1"); shift; done
[ $# -gt 0 ] && shift
EXTRA=("$@")
for base in "${BASES[@]}"; do
  label=$(basename "$base")
  for method in zero-shot lora-ft; do
    seeds="0 1 2"; [ "$method" = zero-shot ] && seeds=0
    for seed in $seeds; do
      [ -f "$RUNS/$label-$method-seed$seed/metrics.json" ] && continue
      OMP_NUM_THREADS=1 .venv/bin/citkit run --quiet --stream toy-mixed --method "$method" --seed "$seed" \
        --model "$base" --runs-dir "$RUNS" --name "$label-$method-seed$seed" "${EXTRA[@]}" > /dev/null
    done
  done
done
.venv/bin/python - "$RUNS" "${BASES[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path
runs, bases = Path(sys.argv[1]), sys.argv[2:]
print("| base | gate mean | zero-shot MFN | LoRA-FT MFT | LoRA-FT MFN | LoRA-FT BWT, seeds 0-2 | mean ± sd |")
print("|---|---|---|---|---|---|---|")
for base in bases:
    label = Path(base).name
    gate = json.loads((Path(base) / "quality.json").read_text())["mean"]
    zero = json.loads((runs / f"{label}-zero-shot-seed0" / "metrics.json").read_text())["mfn"]
    runs_ = [json.loads((runs / f"{label}-lora-ft-seed{s}" / "metrics.json").read_text()) for s in range(3)]
    bwt = [m["bwt"] for m in runs_]
    mft, mfn = (statistics.mean(m[key] for m in runs_) for key in ("mft", "mfn"))
    print(f"| {label} | {gate:.2f} | {zero:.1f} | {mft:.1f} | {mfn:.1f} | {', '.join(f'{b:.1f}' for b in bwt)} | "
          f"{statistics.mean(bwt):.1f} ± {statistics.stdev(bwt):.1f} |")
PY
