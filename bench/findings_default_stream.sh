#!/usr/bin/env bash
# The README's findings table on a toy world: the methods behind each published finding, over
# seeds 0-2, mean ± sd (citkit compare --seeds). EWC and MAS (and their TIR versions) at the weight
# tuned for the plain version on seed 0 of that stream: toy-mixed EWC 1e4, MAS 1e3 (the seed-0 sweep
# in the README); toy EWC 1e5, MAS 1e4 (bench/compare_default_stream.sh runs toy). Finished runs are reused.
#   bash bench/findings_default_stream.sh [runs-dir] [stream] [seeds] [--set NAME=VALUE ...]
#   bash bench/findings_default_stream.sh runs toy-mixed 1     # one seed (run seeds side by side)
#   bash bench/findings_default_stream.sh runs toy             # the all-new-skill variant's table
# Writes <runs-dir>/compare-<stream>-seeds<seeds>/compare.{md,csv} (and one compare folder per seed).
set -euo pipefail
RUNS=${1:-runs}
STREAM=${2:-toy-mixed}
SEEDS=${3:-0,1,2}
case "$STREAM" in
  toy) EWC=1e5; MAS=1e4 ;;
  *) EWC=1e4; MAS=1e3 ;;
esac
METHODS=zero-shot,lora-ft,joint,replay,eproj
METHODS=$METHODS,ewc:penalty_weight=$EWC,ewc-tir:penalty_weight=$EWC,mas:penalty_weight=$MAS,mas-tir:penalty_weight=$MAS
METHODS=$METHODS,o-lora,moelora,hide-llava,hide-llava:fusion=paper,hide-llava:layout=expand-all
shift $(( $# < 3 ? $# : 3 ))
.venv/bin/citkit compare --quiet --runs-dir "$RUNS" --stream "$STREAM" --methods "$METHODS" --seeds "$SEEDS" "$@"
