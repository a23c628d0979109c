"""The fine-tuning reward: minus the mean squared PDE residual of the final sample.

The reward is defined on the final state ``x0`` of a sampler trajectory only (PIRF's
trajectory-level reward). ``x0`` lives in model space; it is mapped to physical units with
the checkpoint's :class:`~pirf.pdes.normalisation.Normalisation` (differentiable) and the
PDE's residual operator is applied there, so the reward means the same thing as the
physics metric of evaluation.

Darcy. Its residual uses harmonic means of the coefficient ``a``, which need ``a > 0``.
Evaluation projects ``a`` onto its two admissible values (``pde.snap``), but that
projection is piecewise constant, so its gradient is zero almost everywhere and it cannot
sit inside a reward. Instead ``a`` is clamped from below at ``coefficient_floor * a_low``
(half the low permeability by default): the residual is computed on the raw generated
``a`` wherever it is admissible, gradients reach ``a`` there, and a generated value that
strays near or below zero cannot divide by zero. Pixels below the floor get no gradient
through ``a`` (still through ``u``); in normalised space the floor lies far outside the
data, so a reasonable base model never reaches it.
"""

from __future__ import annotations

from typing import Literal

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.darcy import Darcy
from pirf.pdes.normalisation import Normalisation

Norm = Literal["mse", "mae"]
NORMS: tuple[str, ...] = ("mse", "mae")
COEFFICIENT_FLOOR = 0.5
"""Darcy's ``a`` is clamped below at this fraction of ``a_low`` inside the reward."""


def admissible_fields(
    pde: PDE, fields: torch.Tensor, *, coefficient_floor: float = COEFFICIENT_FLOOR
) -> torch.Tensor:
    """``fields`` made safe for a differentiable residual (see the module docstring).

    Darcy: ``a`` clamped below at ``coefficient_floor * a_low``. Other PDEs: unchanged.
    """
    if not isinstance(pde, Darcy):
        return fields
    if not coefficient_floor > 0:
        raise PirfError(f"the coefficient floor must be positive, got {coefficient_floor}")
    floor = coefficient_floor * float(pde.params["a_low"])
    return torch.cat([fields[:, :1].clamp_min(floor), fields[:, 1:]], dim=1)


def residual_loss(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    norm: Norm = "mse",
    scale: float | None = None,
    dtype: torch.dtype = torch.float32,
    coefficient_floor: float = COEFFICIENT_FLOOR,
) -> torch.Tensor:
    """Per-sample residual loss ``(B,)`` of model-space ``samples`` ``(B, C, H, W)``.

    ``mse``: mean over residual points of ``R^2``; ``mae``: mean of ``|R|``; ``R`` in
    physical units, computed in ``dtype`` (float32 or float64). ``scale`` divides the loss
    (e.g. the base model's residual MSE, :func:`residual_scale`, so that losses of
    different PDEs are of order one). Differentiable in ``samples``.
    """
    if norm not in NORMS:
        raise PirfError(f"unknown residual norm '{norm}'; use one of {', '.join(NORMS)}")
    if dtype not in (torch.float32, torch.float64):
        raise PirfError(f"the reward is computed in float32 or float64, not {dtype}")
    if scale is not None and not scale > 0:
        raise PirfError(f"the reward scale must be positive, got {scale}")
    fields = normalisation.to_physical(samples.to(dtype))
    fields = admissible_fields(pde, fields, coefficient_floor=coefficient_floor)
    residual = pde.residual(fields).flatten(1)
    loss = residual.square().mean(dim=1) if norm == "mse" else residual.abs().mean(dim=1)
    return loss if scale is None else loss / scale


def residual_reward(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    norm: Norm = "mse",
    scale: float | None = None,
    dtype: torch.dtype = torch.float32,
    coefficient_floor: float = COEFFICIENT_FLOOR,
) -> torch.Tensor:
    """Per-sample reward ``(B,)``: minus :func:`residual_loss` (same arguments)."""
    return -residual_loss(
        pde,
        normalisation,
        samples,
        norm=norm,
        scale=scale,
        dtype=dtype,
        coefficient_floor=coefficient_floor,
    )


@torch.no_grad()
def residual_scale(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    norm: Norm = "mse",
    coefficient_floor: float = COEFFICIENT_FLOOR,
) -> float:
    """The mean residual loss of ``samples`` (e.g. the base model's), in float64: the
    ``scale`` that makes the fine-tuning loss start near one."""
    loss = residual_loss(
        pde,
        normalisation,
        samples,
        norm=norm,
        dtype=torch.float64,
        coefficient_floor=coefficient_floor,
    )
    value = float(loss.mean())
    if not value > 0 or value == float("inf"):
        raise PirfError(f"the base residual scale must be positive and finite, got {value}")
    return value


__all__ = [
    "COEFFICIENT_FLOOR",
    "NORMS",
    "Norm",
    "admissible_fields",
    "residual_loss",
    "residual_reward",
    "residual_scale",
]
