"""A small tiny-base build as one process of a multi-process job (launched by tests with torch.distributed.run).

    python -m torch.distributed.run --nproc_per_node 2 tests/engine/distributed_pretrain.py OUT
"""

import sys

from citkit.models.pretrain import PretrainConfig, pretrain_tiny
from citkit.models.tiny import TinyModelConfig


def main() -> None:
    config = PretrainConfig(model=TinyModelConfig(text_layers=1, vision_layers=1), train_per_task=16,
                            test_per_task=4, vision_steps=3, steps=2, batch_size=8, quality_gate=0.0)
    pretrain_tiny(config, sys.argv[1], progress=False)


if __name__ == "__main__":
    main()
