"""Every packaged method preset (citkit/configs/methods/*.yaml) builds a valid run configuration."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from citkit.config import to_dict
from citkit.run_config import build_run_config, load_config_file

PRESETS = sorted(Path(str(resources.files("citkit") / "configs" / "methods")).glob("*.yaml"))


def test_presets_exist() -> None:
    assert {p.stem for p in PRESETS} >= {"replay", "ewc", "ewc-tir", "mas", "mas-tir", "lwf"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_builds_a_run_config(path: Path) -> None:
    data = load_config_file(path)
    config = build_run_config(data)
    assert config.method == path.stem
    read_as_written(data.get("method_options", {}), to_dict(config.method_config()))


def read_as_written(written: dict, resolved: dict) -> None:
    for key, value in written.items():
        if isinstance(value, dict):
            read_as_written(value, resolved[key])
        else:
            assert resolved[key] == value, key


def test_hide_llava_preset_trains_the_projector_at_a_tenth_of_the_lora_lr() -> None:
    """The authors' code: mm_projector_lr 2e-5 with learning_rate 2e-4, whatever lr the user picks."""
    data = load_config_file(next(p for p in PRESETS if p.stem == "hide-llava"))
    config = build_run_config(data, ["train.lr=3e-4"])
    assert config.adapter.train_projector and config.train.projector_rate == pytest.approx(3e-5)
