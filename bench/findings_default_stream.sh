#!/usr/bin/env bash
# The README's findings table on a toy world: the methods behind each published finding, over
# seeds 0-2, mean ± sd (citkit compare --seeds). EWC and MAS (and their TIR versions) at the weight
# tuned for the plain version on seed 0 of `toy` (EWC 1e5, MAS 1e4; the seed-0 sweep is
# bench/compare_default_stream.sh). Finished runs are reused.
#   bash bench/findings_default_stream.sh [runs-dir] [stream] [seeds]
#   bash bench/findings_default_stream.sh runs toy-mixed 1     # one seed (run seeds side by side)
#   bash bench/findings_default_stream.sh runs toy             # the all-new-skill variant's table
# Writes <runs-dir>/compare-<stream>-seeds<seeds>/compare.{md,csv} (and one compare folder per seed).
set -euo pipefail
RUNS=${1:-runs}
STREAM=${2:-toy-mixed}
SEEDS=${3:-0,1,2}
METHODS=zero-shot,lora-ft,joint,replay,eproj
METHODS=$METHODS,ewc:penalty_weight=1e5,ewc-tir:penalty_weight=1e5,mas:penalty_weight=1e4,mas-tir:penalty_weight=1e4
METHODS=$METHODS,o-lora,moelora,hide-llava,hide-llava:fusion=paper,hide-llava:layout=expand-all
.venv/bin/citkit compare --quiet --runs-dir "$RUNS" --stream "$STREAM" --methods "$METHODS" --seeds "$SEEDS"
