"""Packaged configuration files: stream definitions, method presets and accelerate launch configs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from citkit.errors import UnknownNameError


def accelerate_config(name: str) -> Path:
    """The path of a shipped accelerate config (ddp, fsdp, deepspeed-zero2, deepspeed-zero3), for
    `accelerate launch --config_file PATH`."""
    folder = Path(str(resources.files("citkit") / "configs" / "accelerate"))
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise UnknownNameError(f"no accelerate config {name!r}; shipped: {known}")
    return path
