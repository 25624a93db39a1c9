"""A continual run as one process of a multi-process job (launched by tests with torch.distributed.run).

    python -m torch.distributed.run --nproc_per_node 2 tests/engine/distributed_run.py STREAM RUNS NAME \
        BATCH_SIZE [STOP_AFTER or -] [SETTING=VALUE ...]

The main process writes the run directory; every process prints nothing.
"""

import sys

import torch

from citkit.run_config import build_run_config
from citkit.runner import run


def main() -> None:
    stream, runs, name, batch_size = sys.argv[1:5]
    stop_after = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    torch.set_num_threads(1)
    # 12 steps at lr 2e-3 (not the default 5e-4) learn enough that the matrices compared are not all zero
    overrides = [f"stream.name={stream}", "stream.tasks=[colour, shape]", "train.max_steps=12", "train.lr=0.002",
                 f"train.batch_size={batch_size}", "train.progress=false", "adapter.dropout=0.0", *sys.argv[6:]]
    config = build_run_config({}, overrides, method="lora-ft", seed=1, name=name, runs_dir=runs)
    run(config, stop_after=stop_after)


if __name__ == "__main__":
    main()
