"""Fixtures of the class-incremental tests: a random tiny ViT on disk and small, fast stream settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from citkit.cil.backbone import BackboneConfig, TinyViTConfig, build_tiny_vit
from citkit.cil.runner import CILRunConfig
from citkit.cil.stream import CILDataConfig
from citkit.engine.config import TrainConfig

SMALL_VIT = TinyViTConfig(hidden=32, layers=2, heads=2, mlp=64, image_size=16, patch_size=4)


@pytest.fixture(scope="session")
def random_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny ViT saved with save_pretrained (loaded back through from_pretrained)."""
    path = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    build_tiny_vit(SMALL_VIT).save_pretrained(path)
    return path


def small_config(path: Path, runs: Path, method: str = "lora-ft", **options) -> CILRunConfig:
    """6 built-in classes in 3 tasks, 12 training and 6 test images per class, one epoch: seconds per run."""
    data = options.pop("data", CILDataConfig(classes=6, tasks=3, train_per_class=12, test_per_class=6))
    if method in ("desire", "slca") and "alignment" not in options:
        options["alignment"] = {"per_class": 32}  # the refinement's default 256 per class only costs time here
    return CILRunConfig(method=method, method_options=options, data=data, model=BackboneConfig(path=str(path)),
                        train=TrainConfig(epochs=1, batch_size=16, lr=5e-3, progress=False), runs_dir=str(runs))


@pytest.fixture
def config_for(random_vit: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[str] = []

    def make(method: str = "lora-ft", **options) -> CILRunConfig:
        """A fresh run directory per call (so two option sets never meet in one folder)."""
        made.append(method)
        return replace(small_config(random_vit, tmp_path / "runs", method, **options), name=f"{method}-{len(made)}")

    return make


__all__ = ["SMALL_VIT", "small_config"]
