"""A probe base: the packaged recipe with a deeper, narrower decoder (16 blocks of width 96, about the
same compute per step as 8 of width 128), built on two threads. It asks whether depth makes the top
block the task-specific one in the per-block test (measured: no; README, "Results on the default world").

    python bench/probe_deeper_base.py runs/_models/deep16      # about 18 min on the 2-core machine
    citkit run --model runs/_models/deep16 --method hide-llava --set method.layout=expand-all \
        --set method.oracle_routing=true --name deep16-expand-all-seed0
    citkit analyze blocks runs/deep16-expand-all-seed0 --samples-per-task 0
"""

from __future__ import annotations

import sys

from citkit.models.pretrain import PretrainConfig, pretrain_tiny
from citkit.models.tiny import TinyModelConfig


def main() -> None:
    config = PretrainConfig(model=TinyModelConfig(text_hidden=96, text_layers=16), quality_gate=0.0)
    quality = pretrain_tiny(config, sys.argv[1] if len(sys.argv) > 1 else "runs/_models/deep16", threads=2)
    print(f"scores {quality['scores']}, mean {quality['mean']:.2f}, {quality['train_seconds']:.0f} s of training, "
          f"{quality['parameters']} parameters")


if __name__ == "__main__":
    main()
