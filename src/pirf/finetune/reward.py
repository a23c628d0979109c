"""The fine-tuning reward: minus a norm of the PDE residual of the final sample.

The reward is defined on the final state ``x0`` of a sampler trajectory only (PIRF's
trajectory-level reward). ``x0`` lives in model space; it is mapped to physical units with
the checkpoint's :class:`~pirf.pdes.normalisation.Normalisation` (differentiable), made
safe for a differentiable residual by the PDE (:meth:`~pirf.pdes.PDE.reward_fields`: Darcy
clamps its coefficient away from zero), and the PDE's residual operator is applied there,
so the reward means the same thing as the physics metric of evaluation.

Which norm (:data:`REWARDS`, ``--reward``):

* ``residual``: the mean of ``R^2`` (or ``|R|`` with ``norm="mae"``), the evaluation's
  residual MSE. A stencil weighs the error of the solution at wavenumber ``k`` by about
  ``|k|^2`` per derivative (``|k|^4`` in the MSE of a Laplacian): this norm sees the
  finest scales almost alone.
* ``preconditioned``: the mean of ``(P^-1 R)^2``, with ``P`` the PDE's constant-coefficient
  operator (:meth:`~pirf.pdes.PDE.precondition`: sine transforms for the Dirichlet
  problems, Fourier transforms for the periodic ones, a Laplacian scaled by the mean
  coefficient for Darcy). It weighs every scale of the solution's error alike; for
  Poisson and Helmholtz it is exactly the squared error against a re-solve from the
  generated input, the quantity solver consistency measures.
* ``mixed``: both of the above, each divided by the base model's value, averaged with
  weights 1 and ``weight`` (``--reward-weight``).
* ``multiscale``: the mean square of the residual average-pooled by 1, 2, 4, ... (down to
  four points per axis), each scale divided by the base model's value, averaged: every
  dyadic scale of the residual counts alike. Needs nothing from the PDE but its residual.

Terms are divided by their mean on the base model's samples (:meth:`Reward.calibrate`),
so the loss of every PDE and every norm starts near one.

What the reward may move (:data:`REWARD_INPUTS`, ``--reward-inputs``):

* ``free``: every entry of the sample, as the published method does. The residual's
  gradient also reaches the problem's inputs (Poisson's source, Helmholtz's coefficient,
  Darcy's permeability, Burgers' initial row, Kolmogorov's first frame), and the cheapest
  way to cancel a solution's grid-scale error is often to copy it into the input: the
  residual falls while the inputs gain fine-scale noise the data do not have.
* ``held``: the inputs (:meth:`~pirf.pdes.PDE.input_mask`) enter the residual with their
  gradient stopped, so the reward moves only the solution, toward the solve of the inputs
  the prior drew. For the linear elliptic PDEs the residual then vanishes exactly when the
  solution is the re-solve that solver consistency measures against.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from pirf.errors import PirfError, option
from pirf.finetune.config import NORMS, REWARD_INPUTS, REWARDS
from pirf.pdes.base import PDE
from pirf.pdes.darcy import COEFFICIENT_FLOOR
from pirf.pdes.normalisation import Normalisation

Norm = Literal["mse", "mae"]
MULTISCALE_MIN_POINTS = 4
"""The coarsest scale of the multiscale reward keeps at least this many points per axis."""


def admissible_fields(pde: PDE, fields: torch.Tensor) -> torch.Tensor:
    """``fields`` made safe for a differentiable residual (:meth:`PDE.reward_fields`)."""
    return pde.reward_fields(fields)


def _reduce(values: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample mean of ``values^2`` (``mse``) or ``|values|`` (``mae``)."""
    flat = values.flatten(1)
    return flat.square().mean(dim=1) if norm == "mse" else flat.abs().mean(dim=1)


def _check(norm: str, dtype: torch.dtype) -> None:
    if norm not in NORMS:
        raise PirfError(f"unknown residual norm '{norm}'; use one of {', '.join(NORMS)}")
    if dtype not in (torch.float32, torch.float64):
        raise PirfError(f"the reward is computed in float32 or float64, not {dtype}")


def _check_inputs(pde: PDE, inputs: str) -> None:
    if inputs not in REWARD_INPUTS:
        raise PirfError(
            f"unknown {option('reward_inputs')} '{inputs}'; use one of {', '.join(REWARD_INPUTS)}"
        )
    if inputs == "held" and not pde.has_inputs:
        raise PirfError(
            f"{option('reward_inputs')} held needs inputs, and PDE '{pde.name}' marks none "
            "(PDE.input_mask); use free"
        )


def hold_inputs(pde: PDE, samples: torch.Tensor) -> torch.Tensor:
    """``samples`` ``(B, C, H, W)`` with the gradient stopped at the PDE's inputs
    (:meth:`PDE.input_mask`): the same values, differentiable in the solution only."""
    mask = pde.input_mask(*samples.shape[-2:]).to(samples.device)
    return torch.where(mask, samples.detach(), samples)


def pooled_scales(residual: torch.Tensor) -> list[torch.Tensor]:
    """The residual ``(B, C, H, W)`` average-pooled by 1, 2, 4, ... while both axes keep at
    least :data:`MULTISCALE_MIN_POINTS` points (trailing rows that do not fill a window are
    left out of that scale)."""
    scales = [residual]
    factor = 2
    while min(residual.shape[-2:]) // factor >= MULTISCALE_MIN_POINTS:
        scales.append(F.avg_pool2d(residual, factor))
        factor *= 2
    return scales


def reward_terms(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    reward: str = "residual",
    norm: Norm = "mse",
    dtype: torch.dtype = torch.float32,
    snap: bool = False,
    relative: bool = False,
    inputs: str = "free",
) -> dict[str, torch.Tensor]:
    """The per-sample terms ``{name: (B,)}`` of the reward ``reward`` (module docstring),
    before any scaling. Differentiable in model-space ``samples`` ``(B, C, H, W)``.

    ``snap``: the residual sees the fields as evaluation does, projected by
    :meth:`PDE.snap`, with the gradient passed straight through the projection (as if it
    were the identity); for Darcy the reward then measures the snapped coefficient's
    residual, which the evaluation reports. ``relative``: each sample's terms are divided
    by its own size in model space (the mean square of its normalised fields for ``mse``,
    their root mean square for ``mae``), so a sample cannot lower its loss by shrinking:
    the cheapest way to a small residual, which collapses the samples' diversity.
    ``inputs``: ``held`` stops the gradient at the PDE's inputs (module docstring)."""
    if reward not in REWARDS:
        raise PirfError(f"unknown {option('reward')} '{reward}'; use one of {', '.join(REWARDS)}")
    _check(norm, dtype)
    _check_inputs(pde, inputs)
    if inputs == "held":
        samples = hold_inputs(pde, samples)
    fields = pde.reward_fields(normalisation.to_physical(samples.to(dtype)))
    if snap:
        fields = fields + (pde.snap(fields) - fields).detach()
    residual = pde.residual(fields)
    terms: dict[str, torch.Tensor] = {}
    if reward in ("residual", "mixed"):
        terms["residual"] = _reduce(residual, norm)
    if reward in ("preconditioned", "mixed"):
        terms["preconditioned"] = _reduce(pde.precondition(residual, fields), norm)
    if reward == "multiscale":
        for index, pooled in enumerate(pooled_scales(residual)):
            terms[f"scale{2**index}"] = _reduce(pooled, norm)
    if relative:
        size = _reduce(samples.to(dtype), norm)
        terms = {name: values / size for name, values in terms.items()}
    return terms


class Reward:
    """The fine-tuning loss of model-space samples: the mean over the reward's terms of
    each term divided by its scale (its value on the base model's samples, once
    :meth:`calibrate` has run; 1 before). Per sample, ``(B,)``; differentiable. Arguments
    as :func:`reward_terms`'s; ``weight`` weighs the preconditioned term of ``mixed``
    against the residual term (the loss is their weighted mean); ``inputs`` says what the
    reward may move (``free`` or ``held``)."""

    def __init__(
        self,
        pde: PDE,
        normalisation: Normalisation,
        *,
        reward: str = "residual",
        norm: Norm = "mse",
        dtype: torch.dtype = torch.float32,
        snap: bool = False,
        weight: float = 1.0,
        relative: bool = False,
        inputs: str = "free",
    ) -> None:
        if reward not in REWARDS:
            raise PirfError(
                f"unknown {option('reward')} '{reward}'; use one of {', '.join(REWARDS)}"
            )
        _check(norm, dtype)
        _check_inputs(pde, inputs)
        if reward in ("preconditioned", "mixed") and not pde.has_preconditioner:
            raise PirfError(
                f"{option('reward')} {reward} needs a preconditioner, which PDE '{pde.name}' "
                "lacks; use residual or multiscale"
            )
        self.pde, self.normalisation = pde, normalisation
        if not (weight > 0 and math.isfinite(weight)):
            raise PirfError(f"{option('reward_weight')} must be positive, got {weight}")
        self.reward, self.norm, self.dtype, self.snap = reward, norm, dtype, snap
        self.weight = float(weight)
        self.relative, self.inputs = relative, inputs
        self.scales: dict[str, float] | None = None

    def terms(self, samples: torch.Tensor, dtype: torch.dtype | None = None) -> dict:
        """The unscaled per-sample terms (:func:`reward_terms`)."""
        return reward_terms(
            self.pde,
            self.normalisation,
            samples,
            reward=self.reward,
            norm=self.norm,
            dtype=dtype or self.dtype,
            snap=self.snap,
            relative=self.relative,
            inputs=self.inputs,
        )

    @torch.no_grad()
    def calibrate(self, samples: torch.Tensor) -> dict[str, float]:
        """Set each term's scale to its mean over ``samples`` (the base model's), in
        float64; returns the scales."""
        scales = {}
        for name, values in self.terms(samples, torch.float64).items():
            value = float(values.mean())
            if not (value > 0 and math.isfinite(value)):
                raise PirfError(
                    f"the base model's {name} reward term must be positive and finite, "
                    f"got {value}"
                )
            scales[name] = value
        self.scales = scales
        return dict(scales)

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        terms = self.terms(samples)
        scales = self.scales or {}
        weights = {name: self.weight if name == "preconditioned" else 1.0 for name in terms}
        total = sum(
            weights[name] * values / scales.get(name, 1.0) for name, values in terms.items()
        )
        return total / sum(weights.values())


def residual_loss(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    norm: Norm = "mse",
    scale: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-sample residual loss ``(B,)`` of model-space ``samples`` ``(B, C, H, W)``.

    ``mse``: mean over residual points of ``R^2``; ``mae``: mean of ``|R|``; ``R`` in
    physical units, computed in ``dtype`` (float32 or float64). ``scale`` divides the loss
    (e.g. the base model's residual MSE, :func:`residual_scale`, so that losses of
    different PDEs are of order one). Differentiable in ``samples``.
    """
    if scale is not None and not scale > 0:
        raise PirfError(f"the reward scale must be positive, got {scale}")
    loss = reward_terms(pde, normalisation, samples, norm=norm, dtype=dtype)["residual"]
    return loss if scale is None else loss / scale


def residual_reward(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    norm: Norm = "mse",
    scale: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-sample reward ``(B,)``: minus :func:`residual_loss` (same arguments)."""
    return -residual_loss(pde, normalisation, samples, norm=norm, scale=scale, dtype=dtype)


@torch.no_grad()
def residual_scale(
    pde: PDE, normalisation: Normalisation, samples: torch.Tensor, *, norm: Norm = "mse"
) -> float:
    """The mean residual loss of ``samples`` (e.g. the base model's), in float64: the
    ``scale`` that makes the fine-tuning loss start near one."""
    reward = Reward(pde, normalisation, norm=norm)
    return reward.calibrate(samples)["residual"]


__all__ = [
    "COEFFICIENT_FLOOR",
    "MULTISCALE_MIN_POINTS",
    "NORMS",
    "REWARDS",
    "REWARD_INPUTS",
    "Norm",
    "Reward",
    "admissible_fields",
    "hold_inputs",
    "pooled_scales",
    "residual_loss",
    "residual_reward",
    "residual_scale",
    "reward_terms",
]
