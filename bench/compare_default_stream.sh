#!/usr/bin/env bash
# The README's method comparison on a toy stream (default: the default stream, toy-mixed), seed 0: every method with its registered
# defaults, the variants the README discusses, and the penalty-weight sweep of the regularisers.
# Finished runs are reused, so re-running only fills in what is missing.
#   bash bench/compare_default_stream.sh [runs-dir] [stream] [model] [--set NAME=VALUE ...]
# Writes <runs-dir>/compare-<stream>-seed0/compare.{md,csv,png}.
set -euo pipefail
RUNS=${1:-runs}
STREAM=${2:-toy-mixed}    # or toy; the first world: toy-format with MODEL=tiny-v1
MODEL=${3:-tiny}
METHODS=zero-shot,lora-ft,joint,replay,ewc,mas,ewc-tir,mas-tir,lwf,o-lora,moelora,eproj,hide-llava
VARIANTS=eproj:also_lora=true,hide-llava:image_weight=0,hide-llava:fusion=paper,hide-llava:fusion=paper:image_weight=0,hide-llava:expert_init=kaiming,hide-llava:oracle_routing=true,hide-llava:layout=expand-all:oracle_routing=true,hide-llava:layout=expand-all,hide-llava:layout=merge-all
SWEEP=ewc:penalty_weight=1e3,ewc:penalty_weight=1e4,ewc:penalty_weight=1e5,ewc:penalty_weight=1e6
for method in mas ewc-tir mas-tir; do
  for weight in 1e4 1e5 1e6; do SWEEP="$SWEEP,$method:penalty_weight=$weight"; done
done
SWEEP="$SWEEP,lwf:distill_weight=0.1,lwf:distill_weight=0.3"
shift $(( $# < 3 ? $# : 3 ))
.venv/bin/citkit compare --quiet --stream "$STREAM" --model "$MODEL" --runs-dir "$RUNS" --methods "$METHODS,$VARIANTS,$SWEEP" "$@"
