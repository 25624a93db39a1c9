"""Where a model name points: the built-in tiny model, or a local folder / hub id."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from accelerate.logging import get_logger

from citkit.models.loading import ModelConfig, check_model_path

logger = get_logger(__name__)
TINY = "tiny"


def packaged_tiny_model() -> Path:
    """The pretrained tiny model shipped inside the package (rebuilt by `citkit model pretrain`)."""
    return Path(str(resources.files("citkit") / "assets" / "tiny-llava"))


def resolve_model_path(config: ModelConfig, runs_dir: Path) -> str:
    """'tiny' -> the packaged model, else a cached build, else build it now; other paths are checked."""
    if config.path != TINY:
        check_model_path(config.path)
        return config.path
    packaged = packaged_tiny_model()
    if (packaged / "config.json").is_file():
        return str(packaged)
    cached = runs_dir / "_models" / "tiny-llava"
    if not (cached / "config.json").is_file():
        from citkit.models.pretrain import PretrainConfig, pretrain_tiny

        logger.warning(f"no packaged tiny model; pretraining one into {cached} (a few minutes, once)")
        pretrain_tiny(PretrainConfig(), cached)
    return str(cached)
