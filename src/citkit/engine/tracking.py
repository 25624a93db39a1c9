"""The accelerator a run trains with, and its experiment trackers (accelerate's `log_with`).

accelerate quietly drops a tracker whose package is missing; a user who asked for one and watches an
empty dashboard learns nothing, so an unavailable or unknown tracker is refused here with the package
to install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS
from accelerate.utils import imports

from citkit.engine.config import TrainConfig
from citkit.errors import ConfigError

# Package a user installs for each tracker (the name accelerate checks is the same except where noted).
_PACKAGES = {"tensorboard": "tensorboard (or tensorboardX)", "wandb": "wandb", "mlflow": "mlflow",
             "comet_ml": "comet_ml", "aim": "aim", "clearml": "clearml", "dvclive": "dvclive",
             "swanlab": "swanlab", "trackio": "trackio"}


def check_trackers(names: list[str]) -> None:
    """Every named tracker is known to accelerate and its package is importable."""
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(f"train.log_with: unknown tracker {name!r}; known: "
                              f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")
        available = getattr(imports, f"is_{name}_available", None)
        if available is None or not available():
            raise ConfigError(f"train.log_with: tracker {name!r} needs the package {_PACKAGES.get(name, name)}; "
                              f"pip install it, or drop {name!r} from train.log_with")


def make_accelerator(config: TrainConfig, *, cpu: bool = False, project_dir: str | Path | None = None,
                     extra_trackers: list[Any] | None = None) -> Accelerator:
    """An Accelerator for `config`: its mixed precision and its trackers logging under `project_dir`."""
    check_trackers(config.trackers)
    log_with = [*config.trackers, *(extra_trackers or [])] or None
    if log_with and project_dir is None and any(LOGGER_TYPE_TO_CLASS[n].requires_logging_directory
                                                for n in config.trackers):
        raise ConfigError("train.log_with: a local tracker needs a folder; the run directory gives one "
                          "(citkit run) — pass project_dir when building an Engine yourself")
    # DeepSpeed accumulates inside its engine: it must know k (the engine scales the loss to match).
    # Everywhere else the engine accumulates itself and accelerate's own count stays 1.
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return Accelerator(cpu=cpu, mixed_precision=config.mixed_precision, log_with=log_with,
                       project_dir=str(project_dir) if project_dir is not None else None,
                       gradient_accumulation_steps=config.grad_accum if deepspeed else 1)
