"""Named U-Net sizes: ``tiny`` (CPU, 32^2), ``small`` (one GPU, 64^2), ``paper`` (reference).

``paper`` is the DDPM++ configuration of the reference code: 128 base channels, multipliers
(2, 2, 2), 4 blocks per level, attention at 16^2 and in the middle block. Attention is
specified by resolution here, as in DDPM++, and turned into levels for the resolution a
model is built for; a resolution the network never reaches gets no attention (at 128^2 the
three levels are 128, 64 and 32, so only the middle block attends, exactly as the reference
network does at that size).
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from pirf.errors import PirfError
from pirf.models.edm import SIGMA_DATA, EDMDenoiser
from pirf.models.unet import UNet, UNetConfig

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "base_channels": 32,
        "channel_mult": (1, 2, 2),
        "blocks_per_level": 1,
        "attention_resolutions": (),
        "dropout": 0.0,
    },
    "small": {
        "base_channels": 64,
        "channel_mult": (1, 2, 2),
        "blocks_per_level": 2,
        "attention_resolutions": (16,),
        "dropout": 0.1,
    },
    "paper": {
        "base_channels": 128,
        "channel_mult": (2, 2, 2),
        "blocks_per_level": 4,
        "attention_resolutions": (16,),
        "dropout": 0.1,
    },
}
"""Preset name -> U-Net settings, with attention given by resolution."""


def attention_levels(
    resolution: int, levels: int, attention_resolutions: tuple[int, ...]
) -> tuple[int, ...]:
    """Levels whose side equals one of ``attention_resolutions`` for a ``resolution`` grid.

    Level ``l`` has side ``resolution / 2**l``; resolutions the network never reaches are
    dropped.
    """
    chosen = []
    for target in attention_resolutions:
        if target <= 0 or resolution % target:
            continue
        ratio = resolution // target
        level = int(math.log2(ratio))
        if 2**level == ratio and level < levels:
            chosen.append(level)
    return tuple(sorted(set(chosen)))


def unet_config(
    preset: str,
    *,
    channels: int,
    resolution: int,
    periodic: tuple[bool, bool] = (False, False),
    **overrides: Any,
) -> UNetConfig:
    """The :class:`UNetConfig` of ``preset`` for ``channels`` fields on a ``resolution`` grid.

    ``overrides`` replace preset settings (any ``UNetConfig`` field, or
    ``attention_resolutions``). Raises PirfError if ``resolution`` is not a multiple of the
    network's total stride.
    """
    if preset not in PRESETS:
        raise PirfError(f"unknown model preset '{preset}'; known: {', '.join(PRESETS)}")
    known = {f.name for f in fields(UNetConfig)} - {"in_channels", "periodic"}
    known |= {"attention_resolutions"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PirfError(
            f"invalid override for model preset '{preset}': no setting {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    settings = {**PRESETS[preset], **overrides}
    for key in ("channel_mult", "attention_resolutions"):
        values = settings.get(key, ())
        if not (
            isinstance(values, (list, tuple))
            and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        ):
            raise PirfError(
                f"invalid override for model preset '{preset}': {key} must be a list of "
                f"integers, got {values!r}"
            )
    attention_resolutions = tuple(settings.pop("attention_resolutions", ()))
    levels = len(settings["channel_mult"])
    stride = 2 ** (levels - 1)
    if resolution < stride or resolution % stride:
        raise PirfError(
            f"model preset '{preset}' has {levels} levels and needs a resolution divisible by "
            f"{stride}; got {resolution}"
        )
    if "attention_levels" not in settings:
        settings["attention_levels"] = attention_levels(resolution, levels, attention_resolutions)
    try:
        return UNetConfig(in_channels=channels, periodic=tuple(periodic), **settings)
    except TypeError as error:
        raise PirfError(f"invalid override for model preset '{preset}': {error}") from None


def preset_denoiser(
    preset: str,
    *,
    channels: int,
    resolution: int,
    periodic: tuple[bool, bool] = (False, False),
    sigma_data: float = SIGMA_DATA,
    bf16: bool = True,
    **overrides: Any,
) -> EDMDenoiser:
    """A freshly initialised EDM denoiser around the preset's U-Net."""
    config = unet_config(
        preset, channels=channels, resolution=resolution, periodic=periodic, **overrides
    )
    return EDMDenoiser(UNet(config), sigma_data, bf16=bf16)


__all__ = ["PRESETS", "attention_levels", "preset_denoiser", "unet_config"]
