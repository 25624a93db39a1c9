"""model.quantization: only '4bit', '8bit' or none; without bitsandbytes one clear error names the package."""

import importlib.util

import pytest

from citkit.errors import ConfigError
from citkit.models.loading import ModelConfig, load_model, quantization_config


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.quantization '3bit'"):
        ModelConfig(quantization="3bit")


def test_no_quantization_builds_no_config() -> None:
    assert quantization_config(None, "float32") is None


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_quantized_loading_without_bitsandbytes_names_the_package(tiny_model_path) -> None:
    with pytest.raises(ConfigError, match="needs the bitsandbytes package"):
        load_model(tiny_model_path, quantization="4bit")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes (GPU machines)")
def test_four_bit_config_is_nf4_with_double_quantization() -> None:
    config = quantization_config("4bit", "bfloat16")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
