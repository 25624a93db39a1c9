"""Pretraining the tiny model is deterministic from its seed and enforces its quality gate."""

import pytest
from safetensors.torch import load_file

from citkit.models.pretrain import PretrainConfig, QualityGateError, pretrain_tiny
from citkit.models.tiny import TinyModelConfig

SMALL = dict(model=TinyModelConfig(text_layers=1, vision_layers=1), train_per_task=16, test_per_task=4,
             vision_steps=3, steps=4, batch_size=8)


def test_two_builds_with_one_seed_are_bit_identical(tmp_path) -> None:
    config = PretrainConfig(**SMALL, quality_gate=0.0)
    pretrain_tiny(config, tmp_path / "a", progress=False)
    pretrain_tiny(config, tmp_path / "b", progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_quality_gate_refuses_a_weak_model_and_saves_nothing(tmp_path) -> None:
    with pytest.raises(QualityGateError, match="below the quality gate"):
        pretrain_tiny(PretrainConfig(**SMALL, quality_gate=90.0), tmp_path / "weak", progress=False)
    assert not (tmp_path / "weak").exists()
