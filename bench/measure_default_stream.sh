#!/usr/bin/env bash
# The README's results table: zero-shot, LoRA-FT and Joint on a toy stream over three seeds, mean ± sd
# (citkit compare --seeds). Finished runs are reused. The default stream is toy-mixed.
#   bash bench/measure_default_stream.sh [runs-dir] [stream] [model] [--set NAME=VALUE ...]
#   bash bench/measure_default_stream.sh runs toy-format tiny-v1 --set train.lr=0.002   # the first world's table
set -euo pipefail
RUNS=${1:-runs}
STREAM=${2:-toy-mixed}    # the default stream; `toy` for the all-new-skill variant's table
MODEL=${3:-tiny}
shift $(( $# < 3 ? $# : 3 ))
.venv/bin/citkit compare --quiet --stream "$STREAM" --model "$MODEL" --runs-dir "$RUNS" \
  --methods zero-shot,lora-ft,joint --seeds 0,1,2 "$@"
