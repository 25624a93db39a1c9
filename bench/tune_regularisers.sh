#!/usr/bin/env bash
# The README's penalty-weight sweep of EWC and MAS (and their TIR versions) on a toy stream, seed 0: the
# weight at which the plain version reaches the highest MFN is the one bench/findings_default_stream.sh uses.
# Finished runs are reused.
#   bash bench/tune_regularisers.sh [runs-dir] [stream] [--set NAME=VALUE ...]
# Writes <runs-dir>/compare-<stream>-seed0/compare.{md,csv,png}.
set -euo pipefail
RUNS=${1:-runs}
STREAM=${2:-toy-mixed}
METHODS=""
for weight in 1e3 1e4 1e5 1e6; do METHODS="$METHODS,ewc:penalty_weight=$weight"; done
for weight in 1e2 1e3 1e4 1e5; do METHODS="$METHODS,mas:penalty_weight=$weight"; done
METHODS="$METHODS,ewc-tir:penalty_weight=1e4,ewc-tir:penalty_weight=1e5,mas-tir:penalty_weight=1e3,mas-tir:penalty_weight=1e4"
shift $(( $# < 2 ? $# : 2 ))
.venv/bin/citkit compare --quiet --runs-dir "$RUNS" --stream "$STREAM" --methods "lora-ft$METHODS" "$@"
