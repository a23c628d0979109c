"""Gaussian data ``N(0, s^2 I)``: the one case where the EDM sampler's ODE is solved exactly.

The ideal denoiser is ``D(x, sigma) = s^2 / (s^2 + sigma^2) x``; the probability-flow ODE
``dx/dsigma = sigma x / (s^2 + sigma^2)`` then has the solution
``x(sigma) = x(sigma_0) sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2))``: an independent
reference for the samplers.
"""

import math

import torch

S = 0.5


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    return S**2 / (S**2 + sigma**2) * x


def exact(x_start: torch.Tensor, sigma_start: float, sigma: float) -> torch.Tensor:
    """The exact ODE state at ``sigma`` from ``x_start`` at ``sigma_start``."""
    return x_start * math.sqrt((S**2 + sigma**2) / (S**2 + sigma_start**2))
