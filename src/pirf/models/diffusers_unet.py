"""``diffusers`` epsilon-prediction U-Nets as pirf denoisers (``pip install pirf[diffusers]``).

::

    from diffusers import DDPMScheduler, UNet2DModel
    from pirf.models import from_diffusers

    unet = UNet2DModel.from_pretrained(...)          # or UNet2DModel(**config)
    scheduler = DDPMScheduler.from_pretrained(...)   # its alphas_cumprod and prediction type
    model = from_diffusers(unet, scheduler)          # D(x, sigma), see pirf.models.vp

The conversion is :mod:`pirf.models.vp`'s; this module only knows where a ``UNet2DModel``
keeps its output (``.sample``), its configuration (what a checkpoint records: the
architecture is ``{"backbone": "diffusers_unet2d", "config": unet.config}``) and its top
modules (the last up-sampling block and the output layers). ``diffusers`` is imported only
when one of these functions runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pirf.errors import PirfError
from pirf.models.edm import EDMDenoiser
from pirf.models.vp import TIMESTEPS, EpsilonNetwork, finish

BACKBONE = "diffusers_unet2d"
"""Registered backbone name of a ``UNet2DModel`` rebuilt from its configuration."""


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError as error:
        raise PirfError(
            f"this model needs the optional package diffusers ({error}); install it with "
            "pip install 'pirf[diffusers]'"
        ) from None
    return diffusers


def unet2d_from_config(**config: Any) -> nn.Module:
    """A ``diffusers.UNet2DModel`` built from its configuration (fresh weights)."""
    return _diffusers().UNet2DModel.from_config(config)


def unet_config(unet: nn.Module) -> dict[str, Any]:
    """The JSON configuration that rebuilds ``unet`` (``unet.config``)."""
    try:
        return json.loads(json.dumps(dict(unet.config), allow_nan=False))
    except (AttributeError, TypeError, ValueError) as error:
        name = type(unet).__name__
        raise PirfError(f"cannot record the configuration of {name}: {error}") from None


def default_top_modules(unet: nn.Module) -> list[str]:
    """The last up-sampling block and the output norm and conv of a ``UNet2DModel``."""
    modules = dict(unet.named_modules())
    up_blocks = getattr(unet, "up_blocks", None)
    names = [f"up_blocks.{len(up_blocks) - 1}"] if up_blocks else []
    names += [name for name in ("conv_norm_out", "conv_out") if modules.get(name) is not None]
    return names


def from_diffusers(
    unet: nn.Module,
    scheduler: Any = None,
    *,
    alphas_cumprod: torch.Tensor | Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    timesteps: str = "nearest",
    top_modules: Sequence[str] | None = None,
    bf16: bool = True,
) -> EDMDenoiser:
    """A ``diffusers`` ``UNet2DModel`` predicting epsilon as an EDM denoiser ``D(x, sigma)``.

    The schedule comes from ``scheduler`` (a DDPM-family scheduler: its ``alphas_cumprod``,
    and its ``prediction_type`` must be ``epsilon``) or ``alphas_cumprod``. ``shape``
    ``(C, H, W)`` defaults to the U-Net's ``in_channels`` and ``sample_size``;
    ``timesteps`` (``nearest`` or ``interpolate``) see :mod:`pirf.models.vp`;
    ``top_modules`` defaults to :func:`default_top_modules`. The model is probed once.
    """
    _diffusers()
    if (scheduler is None) == (alphas_cumprod is None):
        raise PirfError("give the scheduler or its alphas_cumprod (one of them)")
    if scheduler is not None:
        prediction = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
        if prediction != "epsilon":
            raise PirfError(
                f"the scheduler's prediction_type is {prediction!r}; from_diffusers converts "
                "epsilon-prediction models only"
            )
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if alphas_cumprod is None:
            raise PirfError(f"{type(scheduler).__name__} has no alphas_cumprod")
    if timesteps not in TIMESTEPS:
        raise PirfError(f"unknown timesteps {timesteps!r}; use one of {', '.join(TIMESTEPS)}")
    config = unet_config(unet)
    if shape is None:
        size = config.get("sample_size")
        sides = (size, size) if isinstance(size, int) else tuple(size or ())
        if len(sides) != 2:
            raise PirfError("the U-Net's config has no sample_size; pass shape=(C, H, W)")
        shape = (int(config.get("in_channels", 3)), *sides)
    backbone = EpsilonNetwork(
        unet,
        alphas_cumprod,
        timesteps=timesteps,
        output="sample",
        top_modules=list(top_modules) if top_modules is not None else default_top_modules(unet),
    )
    spec = {"backbone": BACKBONE, "config": config}
    return finish(backbone, spec, shape, bf16=bf16, what=type(unet).__name__)


__all__ = ["BACKBONE", "default_top_modules", "from_diffusers", "unet2d_from_config", "unet_config"]
