#!/usr/bin/env bash
# The README's findings table on the default world: the methods behind each published finding, over
# seeds 0-2, mean ± sd (citkit compare --seeds). EWC and MAS (and their TIR versions) at the weight
# tuned for the plain version on seed 0 (EWC 1e5, MAS 1e4; the seed-0 sweep is
# bench/compare_default_stream.sh). Finished runs are reused.
#   bash bench/findings_default_stream.sh [runs-dir]
# Writes <runs-dir>/compare-toy-seeds0-1-2/compare.{md,csv} (and one compare folder per seed).
set -euo pipefail
RUNS=${1:-runs}
METHODS=zero-shot,lora-ft,joint,replay,eproj
METHODS=$METHODS,ewc:penalty_weight=1e5,ewc-tir:penalty_weight=1e5,mas:penalty_weight=1e4,mas-tir:penalty_weight=1e4
METHODS=$METHODS,o-lora,moelora,hide-llava,hide-llava:fusion=paper,hide-llava:layout=expand-all
.venv/bin/citkit compare --quiet --runs-dir "$RUNS" --methods "$METHODS" --seeds 0,1,2
