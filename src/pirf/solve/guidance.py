"""Observation guidance (and optional PDE guidance) for solving from partial observations.

DiffusionPDE solves forward and inverse problems by guiding the sampler: after each step
the state moves against the gradient, taken back through the network, of a loss of the
step's denoised estimate ``x0_hat``. :class:`SolverGuidance` is that as a step wrapper of
the one sampler, built on DiffusionPDE's guided step
(:func:`pirf.baselines.guidance.guided_step_function`):

* the observation term, at every step: ``zeta_obs * 0.5 ||M (x0_hat - y)||^2`` in model
  space (:func:`observation_loss`), ``M`` the observed values, ``y`` the observations;
* the PDE term, in the last ``pde_fraction`` of the steps when asked for:
  ``zeta_pde * ||R(x0_hat)||_2``, the residual norm of DiffusionPDE's guidance
  (:func:`pirf.baselines.guidance.residual_norm`, physical units).

The observation loss is the halved *square* of the misfit, where DiffusionPDE takes the
norm itself: its gradient ``J^T M (x0_hat - y)`` moves each observed value by its own
misfit whatever the number of observed points, so ``zeta_obs`` is a dimensionless rate.
On the last step, where the denoiser is nearly the identity (``J ~ I``), ``zeta_obs = 1``
removes the whole misfit of the estimate and values above 2 overshoot; the norm's
gradient instead has unit length, which leaves a misfit of the order of the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pirf.baselines.guidance import LossFn, guided_step_count, guided_step_function
from pirf.errors import PirfError, option
from pirf.sampling.wrappers import SamplingCost, StepFn

DEFAULT_PDE_FRACTION = 0.2
"""The PDE term guides the last 20 % of the steps, as DiffusionPDE's does."""


def observation_loss(mask: torch.Tensor, observed: torch.Tensor) -> LossFn:
    """``x -> 0.5 * sum over observed values of (x - y)^2`` per sample ``(B,)``.

    ``mask (C, H, W)`` (boolean) says which values are observed, the same for every
    sample; ``observed (B, C, H, W)`` holds each sample's observations ``y`` in model space
    (its values off the mask are ignored). The returned function is what the guidance
    differentiates; it expects batches of exactly ``B`` states.
    """
    weights = mask.to(observed.dtype)
    target = observed * weights

    def loss(x: torch.Tensor) -> torch.Tensor:
        if x.shape != target.shape:
            raise PirfError(
                f"the observations are for {target.shape[0]} samples of "
                f"{tuple(target.shape[1:])}, the states are {tuple(x.shape)}"
            )
        misfit = x * weights.to(x.dtype) - target.to(x.dtype)
        return 0.5 * misfit.flatten(1).square().sum(dim=1)

    return loss


def check_step_size(name: str, value: float) -> float:
    """A guidance step size ``value`` of the argument ``name``: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PirfError(f"{option(name)} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise PirfError(f"{option(name)} must be finite and non-negative, got {value}")
    return float(value)


@dataclass(frozen=True)
class SolverGuidance:
    """Observation guidance at every step, PDE guidance in the last ``pde_fraction`` of the
    steps, as a :class:`~pirf.sampling.wrappers.StepWrapper`.

    A guided step is DiffusionPDE's (:func:`pirf.baselines.guidance.guided_step`) with the
    loss ``zeta_obs * observation + zeta_pde * residual`` (the residual term only where it
    guides) and unit step; it runs the network in float32 and costs one backward pass.
    A zero step leaves its term out; with both zero no step is guided.
    """

    observation: LossFn
    zeta_obs: float
    residual: LossFn | None = None
    zeta_pde: float = 0.0
    pde_fraction: float = DEFAULT_PDE_FRACTION

    def __post_init__(self) -> None:
        check_step_size("zeta_obs", self.zeta_obs)
        check_step_size("zeta_pde", self.zeta_pde)
        if not 0 <= self.pde_fraction <= 1:
            raise PirfError(f"the PDE-guided fraction must lie in [0, 1], got {self.pde_fraction}")

    def residual_guides(self, index: int, steps: int) -> bool:
        """Whether the PDE term acts on step ``index`` of ``steps``."""
        if self.residual is None or self.zeta_pde == 0:
            return False
        return index >= steps - guided_step_count(steps, self.pde_fraction)

    def guides(self, index: int, steps: int) -> bool:
        """Whether step ``index`` of ``steps`` is guided at all."""
        return self.zeta_obs > 0 or self.residual_guides(index, steps)

    def full_precision(self, index: int, steps: int) -> bool:
        """Guided steps run the network in float32."""
        return self.guides(index, steps)

    def loss(self, index: int, steps: int) -> LossFn:
        """The weighted loss step ``index`` of ``steps`` differentiates."""
        terms: list[tuple[float, Callable[[torch.Tensor], torch.Tensor]]] = []
        if self.zeta_obs > 0:
            terms.append((self.zeta_obs, self.observation))
        if self.residual is not None and self.residual_guides(index, steps):
            terms.append((self.zeta_pde, self.residual))

        def weighted(x: torch.Tensor) -> torch.Tensor:
            return sum(weight * term(x) for weight, term in terms)

        return weighted

    def __call__(self, step: StepFn, index: int, steps: int, cost: SamplingCost) -> StepFn:
        if not self.guides(index, steps):
            return step
        return guided_step_function(step, self.loss(index, steps), 1.0, cost)


__all__ = ["DEFAULT_PDE_FRACTION", "SolverGuidance", "check_step_size", "observation_loss"]
