"""Where a model name points: a built-in tiny model, or a local folder / hub id.

Built-in names: `tiny` (the default: 8 decoder blocks, byte-level tokenizer, pretrained on the second
toy world's base mixture, `citkit model pretrain`) and `tiny-v1` (the first tiny model: 4 blocks, a
closed word-level vocabulary, pretrained on the first world's base mixture; kept for the `toy-format`
streams it was made for).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from accelerate.logging import get_logger

from citkit.errors import CitkitError
from citkit.models.loading import ModelConfig, check_model_path

logger = get_logger(__name__)
TINY = "tiny"
PACKAGED = {"tiny": "tiny-llava", "tiny-v1": "tiny-llava-v1"}


def packaged_tiny_model(name: str = TINY) -> Path:
    """A pretrained tiny model shipped inside the package (`tiny` is rebuilt by `citkit model pretrain`)."""
    return Path(str(resources.files("citkit") / "assets" / PACKAGED[name]))


def resolve_model_path(config: ModelConfig, runs_dir: Path) -> str:
    """'tiny' / 'tiny-v1' -> the packaged model ('tiny': else a cached build, else build it now); other paths
    are checked."""
    if config.path not in PACKAGED:
        check_model_path(config.path)
        return config.path
    packaged = packaged_tiny_model(config.path)
    if (packaged / "config.json").is_file():
        return str(packaged)
    if config.path != TINY:
        raise CitkitError(f"the packaged model {config.path!r} is missing at {packaged}; reinstall citkit")
    cached = runs_dir / "_models" / "tiny-llava"
    if not (cached / "config.json").is_file():
        from citkit.models.pretrain import PretrainConfig, pretrain_tiny

        logger.warning(f"no packaged tiny model; pretraining one into {cached} (about 15 minutes, once)")
        pretrain_tiny(PretrainConfig(), cached)
    return str(cached)
