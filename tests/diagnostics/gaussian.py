"""Gaussian data ``x0 ~ N(m, S)`` of four pixels with its exact denoiser and a quadratic
reward: the case where the value of a noisy state is known in closed form.

The posterior of ``x0`` given ``x = x0 + sigma z`` is Gaussian with mean
``D(x, sigma) = m + S (S + sigma^2 I)^-1 (x - m)`` (the ideal denoiser) and covariance
``C(sigma) = S - S (S + sigma^2 I)^-1 S``. For ``r(x) = -||A x - b||^2``,
``E[r(x0) | x] = r(D(x, sigma)) - tr(A C A^T)``: the one-step estimate overstates the value
of every state by the same amount, and ``E[r(x0)] = -tr(A S A^T) - ||A m - b||^2``.
"""

from __future__ import annotations

import torch

SHAPE = (1, 2, 2)
DIM = 4
_generator = torch.Generator().manual_seed(11)
_basis = torch.linalg.qr(torch.randn(DIM, DIM, generator=_generator, dtype=torch.float64))[0]
MEAN = 0.5 * torch.randn(DIM, generator=_generator, dtype=torch.float64)
COVARIANCE = _basis @ torch.diag(torch.tensor([0.1, 0.3, 0.8, 1.5], dtype=torch.float64)) @ _basis.T
A = torch.randn(3, DIM, generator=_generator, dtype=torch.float64)
B = torch.randn(3, generator=_generator, dtype=torch.float64)
IDENTITY = torch.eye(DIM, dtype=torch.float64)


def gain(sigma: torch.Tensor) -> torch.Tensor:
    """``S (S + sigma^2 I)^-1`` per level ``(B,)`` -> ``(B, DIM, DIM)``."""
    levels = sigma.to(torch.float64).reshape(-1, 1, 1) ** 2
    return COVARIANCE @ torch.linalg.inv(COVARIANCE + levels * IDENTITY)


def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The posterior mean ``E[x0 | x]`` of states ``x (B, 1, 2, 2)`` at levels ``sigma (B,)``."""
    flat = x.to(torch.float64).reshape(x.shape[0], DIM) - MEAN
    levels = sigma.unique()
    if levels.numel() == 1:  # one level for the batch, as the samplers call it
        mean = MEAN + flat @ gain(levels)[0].T
    else:
        mean = MEAN + torch.einsum("bij,bj->bi", gain(sigma), flat)
    return mean.reshape(x.shape).to(x.dtype)


def flow(x: torch.Tensor, sigma: float, sigma_to: float) -> torch.Tensor:
    """The exact probability-flow ODE map from ``sigma`` to ``sigma_to``:
    ``m + (S + sigma_to^2 I)^(1/2) (S + sigma^2 I)^(-1/2) (x - m)`` (the matrices commute)."""
    values, vectors = torch.linalg.eigh(COVARIANCE)
    factor = ((values + sigma_to**2) / (values + sigma**2)).sqrt()
    linear = vectors @ torch.diag(factor) @ vectors.T
    flat = x.to(torch.float64).reshape(x.shape[0], DIM) - MEAN
    return (MEAN + flat @ linear.T).reshape(x.shape)


def reward(x: torch.Tensor) -> torch.Tensor:
    """``-||A x - b||^2`` per state."""
    flat = x.to(torch.float64).reshape(x.shape[0], DIM)
    return -(flat @ A.T - B).square().sum(dim=1)


def posterior_covariance(sigma: float) -> torch.Tensor:
    return COVARIANCE - gain(torch.tensor([sigma], dtype=torch.float64))[0] @ COVARIANCE


def value_gap(sigma: float) -> float:
    """``E[r(x0) | x] - r(D(x))``, the same for every state: ``-tr(A C A^T)``."""
    return -float(torch.trace(A @ posterior_covariance(sigma) @ A.T))


def data_reward() -> float:
    """``E[r(x0)]`` under the data distribution."""
    return -float(torch.trace(A @ COVARIANCE @ A.T) + (A @ MEAN - B).square().sum())


def draw_data(n: int, seed: int) -> torch.Tensor:
    """``n`` draws of ``x0 ~ N(m, S)``, shaped ``(n, 1, 2, 2)``."""
    generator = torch.Generator().manual_seed(seed)
    root = torch.linalg.cholesky(COVARIANCE)
    z = torch.randn(n, DIM, generator=generator, dtype=torch.float64)
    return (MEAN + z @ root.T).reshape(n, *SHAPE)
