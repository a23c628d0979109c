"""Stochastic sampling: EDM's churn as a step wrapper of the deterministic sampler.

EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) raises the noise of the state
before each step, ``x_hat = x + sqrt(sigma_hat^2 - sigma^2) z`` with fresh unit noise
``z``, then takes the ordinary deterministic step from ``sigma_hat`` down to
``sigma_next``. :class:`Churn` is exactly that, as a
:class:`~pirf.sampling.wrappers.StepWrapper`, so the loop, the step functions, the
precision policy and the cost counting stay those of :func:`pirf.sampling.sample` and
:func:`pirf.sampling.integrate`.

The amount of churn is the one that makes the sampler the reverse-time SDE of the forward
noising process, ``sigma_hat^2 = 2 sigma^2 - sigma_next^2`` (:func:`churn_level`): each
step adds the variance ``sigma^2 - sigma_next^2`` that the forward process adds between
``sigma_next`` and ``sigma``, and the deterministic step removes it again. In EDM's terms
``gamma = sigma_hat / sigma - 1 = sqrt(2 - (sigma_next / sigma)^2) - 1``, which never
exceeds EDM's cap ``sqrt(2) - 1`` (reached on the step to 0). Only this SDE, among the
processes with the model's marginals, has the data's conditional law: started from a state
``x_sigma``, it samples ``p(x_0 | x_sigma)`` as the steps shrink, which is what a value
``E[r(x_0) | x_sigma]`` averages over (:mod:`pirf.diagnostics.value`). The deterministic
sampler (no churn) maps ``x_sigma`` to a single point instead.

The noise comes from a :data:`NoiseDraw`; :func:`seeded_draws` gives each trajectory its
own generator, so a trajectory's noise does not depend on the batch it runs in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pirf.errors import PirfError
from pirf.sampling.precision import Denoiser
from pirf.sampling.wrappers import SamplingCost, StepFn

NoiseDraw = Callable[[torch.Size, torch.dtype, torch.device], torch.Tensor]
"""``draw(shape, dtype, device) -> unit normal noise of shape (B, C, H, W)``."""


def churn_level(sigma: float, sigma_next: float) -> float:
    """The raised noise level ``sigma_hat = sqrt(2 sigma^2 - sigma_next^2)`` of a churned
    step from ``sigma`` to ``sigma_next``: the reverse-time SDE's (module docstring)."""
    return math.sqrt(2.0 * sigma * sigma - sigma_next * sigma_next)


def seeded_draws(generators: Sequence[torch.Generator], repeats: int = 1) -> NoiseDraw:
    """Noise for ``len(generators) * repeats`` trajectories: generator ``i`` draws the noise
    of trajectories ``i * repeats .. (i + 1) * repeats - 1`` (several runs from one state),
    in float64 on the CPU, so the numbers do not depend on the device or the batch."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise PirfError(f"the number of runs per state must be a positive integer, got {repeats!r}")
    generators = list(generators)

    def draw(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if shape[0] != len(generators) * repeats:
            raise PirfError(
                f"a batch of {shape[0]} trajectories needs {shape[0]} noise streams; "
                f"{len(generators)} generators x {repeats} runs were given"
            )
        single = (repeats, *shape[1:])
        draws = [torch.randn(single, generator=g, dtype=torch.float64) for g in generators]
        return torch.cat(draws).to(device=device, dtype=dtype)

    return draw


@dataclass(frozen=True)
class Churn:
    """EDM's stochastic step at the reverse-SDE churn, as a step wrapper.

    Every step from ``sigma`` to ``sigma_next`` becomes: draw ``z`` with ``draw``, raise
    the state to ``sigma_hat`` (:func:`churn_level`), then run the given deterministic step
    from ``sigma_hat`` to ``sigma_next``. A churned Heun step costs the same network
    evaluations as a plain one; the precision policy is left alone. Noise levels must be
    numbers (one level for the batch).
    """

    draw: NoiseDraw

    def full_precision(self, index: int, steps: int) -> bool:
        """Churn changes no step's precision."""
        return False

    def __call__(self, step: StepFn, index: int, steps: int, cost: SamplingCost) -> StepFn:
        def churned(
            denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float
        ) -> torch.Tensor:
            if isinstance(sigma, torch.Tensor) or isinstance(sigma_next, torch.Tensor):
                raise PirfError("churned steps take one noise level for the batch, not a tensor")
            sigma_hat = churn_level(sigma, sigma_next)
            noise = self.draw(x.shape, x.dtype, x.device)
            raised = x + math.sqrt(sigma_hat * sigma_hat - sigma * sigma) * noise
            return step(denoiser, raised, sigma_hat, sigma_next)

        return churned


__all__ = ["Churn", "NoiseDraw", "churn_level", "seeded_draws"]
