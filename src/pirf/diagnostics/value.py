"""The value of a noisy state, two ways: the one-step estimate and what the sampler reaches.

Guidance methods of the DPS family (DiffusionPDE among them) steer a sampler with the
gradient of ``r(D(x_sigma, sigma))``: the reward of the one-step denoised estimate stands
in for the *value* of the noisy state, ``V(x_sigma) = E[r(x_0) | x_sigma]``. For a concave
reward Jensen's inequality already says ``r(E[x_0 | x_sigma]) >= E[r(x_0) | x_sigma]``,
and for a PDE residual the estimate ``D(x_sigma)`` is a blurred field whose residual says
little about the samples the sampler will actually reach. This module measures both sides
on the same states:

* :func:`one_step_reward`: ``r(D(x_sigma, sigma))`` per state;
* :func:`ode_reward`: the reward of the deterministic Heun sampler continued from
  ``x_sigma`` to 0, the sample this state actually becomes;
* :func:`sde_rewards`: the rewards of ``runs`` stochastic continuations (the churned sampler
  at the reverse-SDE churn, :class:`pirf.sampling.Churn`); their mean estimates
  ``E[r(x_0) | x_sigma]`` under the model.

The continuation schedule is :func:`continuation_sigmas`: ``steps`` Karras levels from
``sigma`` down to ``SIGMA_MIN``, then 0. A reward is any function of model-space states
``(B, C, H, W) -> (B,)``; the checkpoint diagnostic uses minus the residual MSE in physical
units (:func:`pirf.finetune.reward.residual_loss`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pirf.errors import PirfError
from pirf.sampling import (
    SIGMA_MAX,
    SIGMA_MIN,
    Churn,
    Denoiser,
    NetworkCall,
    integrate,
    karras_sigmas,
    seeded_draws,
)
from pirf.seeding import unit_generators

RewardFn = Callable[[torch.Tensor], torch.Tensor]
"""``reward(x) -> (B,)`` of model-space states ``x (B, C, H, W)``; higher is better."""

CHURN_STREAM = 18
"""Seed stream of the stochastic continuations (disjoint from the data splits and from the
sampler's initial noise, stream 16)."""


def check_sigma(sigma: float) -> float:
    """A noise level the diagnostic can start from: ``SIGMA_MIN < sigma <= SIGMA_MAX``."""
    value = float(sigma)
    if not SIGMA_MIN < value <= SIGMA_MAX:
        raise PirfError(
            f"noise level {sigma} is outside ({SIGMA_MIN}, {SIGMA_MAX}]; the sampler's "
            "schedule only covers that range"
        )
    return value


def continuation_sigmas(sigma: float, steps: int) -> torch.Tensor:
    """The schedule that continues a state at ``sigma`` to 0: ``steps`` Karras levels from
    ``sigma`` to ``SIGMA_MIN``, then 0 (the sampler's own spacing, on a shorter range)."""
    return karras_sigmas(steps, SIGMA_MIN, check_sigma(sigma))


@torch.no_grad()
def reward_of(reward: RewardFn, x: torch.Tensor) -> torch.Tensor:
    """``reward(x)`` ``(B,)`` as float64 on the CPU, checked for one value per state."""
    values = reward(x)
    if values.shape != (x.shape[0],):
        raise PirfError(
            f"the reward must return one value per state ({x.shape[0]}), "
            f"got shape {tuple(values.shape)}"
        )
    return values.detach().to("cpu", torch.float64)


@torch.no_grad()
def one_step_reward(
    denoiser: Denoiser, reward: RewardFn, x: torch.Tensor, sigma: float
) -> torch.Tensor:
    """``r(D(x, sigma))`` per state ``(B,)``, float64 on the CPU; the network runs in
    float32."""
    levels = torch.full((x.shape[0],), check_sigma(sigma), dtype=x.dtype, device=x.device)
    return reward_of(reward, NetworkCall(denoiser)(x, levels))


def ode_reward(
    denoiser: Denoiser, reward: RewardFn, x: torch.Tensor, sigma: float, *, steps: int
) -> torch.Tensor:
    """The reward ``(B,)`` of the deterministic Heun sampler continued from the states ``x``
    at ``sigma`` to 0 over :func:`continuation_sigmas`."""
    final = integrate(denoiser, x, continuation_sigmas(sigma, steps), method="heun")
    return reward_of(reward, final)


def sde_rewards(
    denoiser: Denoiser,
    reward: RewardFn,
    x: torch.Tensor,
    sigma: float,
    *,
    steps: int,
    runs: int,
    seed: int,
    first: int = 0,
) -> torch.Tensor:
    """The rewards ``(B, runs)`` of ``runs`` churned continuations of each state ``x`` at
    ``sigma`` to 0 (:class:`pirf.sampling.Churn` over :func:`continuation_sigmas`).

    State ``i`` of the batch is state ``first + i`` of the whole set; its runs draw their
    noise from its own generator (:data:`CHURN_STREAM` of ``seed``), so the numbers do not
    depend on how the set is split into batches. All runs of the batch go through the
    network together (``B * runs`` trajectories).
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise PirfError(f"the number of stochastic runs must be a positive integer, got {runs!r}")
    generators = unit_generators(seed, CHURN_STREAM, range(first, first + x.shape[0]))
    churn = Churn(seeded_draws(generators, runs))
    repeated = x.repeat_interleave(runs, dim=0)
    sigmas = continuation_sigmas(sigma, steps)
    final = integrate(denoiser, repeated, sigmas, method="heun", step_wrapper=churn)
    return reward_of(reward, final).reshape(x.shape[0], runs)


__all__ = [
    "CHURN_STREAM",
    "RewardFn",
    "check_sigma",
    "continuation_sigmas",
    "ode_reward",
    "one_step_reward",
    "reward_of",
    "sde_rewards",
]
