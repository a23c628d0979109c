"""Presets: attention placement by resolution and argument checks."""

import pytest

from pirf.errors import PirfError
from pirf.models import PRESETS, UNet, unet_config
from pirf.models.presets import attention_levels


def test_attention_resolution_becomes_a_level_or_disappears():
    assert attention_levels(32, 3, (16,)) == (1,)
    assert attention_levels(64, 3, (16,)) == (2,)
    assert attention_levels(128, 3, (16,)) == ()  # levels are 128, 64, 32
    assert attention_levels(48, 3, (16,)) == ()  # 48 / 16 is not a power of two
    assert attention_levels(64, 4, (16, 32, 64)) == (0, 1, 2)


def test_paper_preset_is_the_reference_ddpmpp():
    config = unet_config("paper", channels=2, resolution=128)
    assert (config.base_channels, config.channel_mult, config.blocks_per_level) == (
        128,
        (2, 2, 2),
        4,
    )
    assert config.attention_levels == () and config.mid_attention


def test_tiny_is_small_enough_for_a_cpu():
    config = unet_config("tiny", channels=2, resolution=32)
    count = sum(p.numel() for p in UNet(config).parameters())
    assert 2e5 < count < 3e6


def test_overrides_and_errors():
    config = unet_config("small", channels=1, resolution=64, periodic=(True, True), dropout=0.0)
    assert config.dropout == 0.0 and config.periodic == (True, True)
    assert config.attention_levels == (2,)
    with pytest.raises(PirfError, match="unknown model preset 'huge'"):
        unet_config("huge", channels=1, resolution=32)
    with pytest.raises(PirfError, match="divisible by 4"):
        unet_config("tiny", channels=1, resolution=30)
    with pytest.raises(PirfError, match="invalid override"):
        unet_config("tiny", channels=1, resolution=32, depth=3)
    assert set(PRESETS) == {"tiny", "small", "paper"}
