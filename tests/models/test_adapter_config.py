"""The LoRA settings every adapter config shares are checked once, for the language model's and the ViT's."""

import pytest

from citkit.cil.backbone import ViTAdapterConfig
from citkit.errors import ConfigError
from citkit.models.lora import AdapterConfig


@pytest.mark.parametrize("config", [AdapterConfig, ViTAdapterConfig])
@pytest.mark.parametrize(("settings", "message"), [
    ({"rank": 0}, "adapter.rank must be >= 1"),
    ({"dropout": 1.0}, r"adapter.dropout must be in \[0, 1\)"),
    ({"target_modules": ()}, "adapter.target_modules is empty"),
])
def test_bad_lora_settings_are_refused_with_the_setting_named(config, settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config(**settings)


def test_good_settings_pass() -> None:
    assert AdapterConfig(rank=4, dropout=0.1).rank == 4 and ViTAdapterConfig(rank=2).rank == 2
