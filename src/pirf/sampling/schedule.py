"""Noise levels of the EDM sampler (Karras et al. 2022, eq. 5)."""

from __future__ import annotations

import torch

from pirf.errors import PirfError

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0


def karras_sigmas(
    steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """``steps + 1`` noise levels, float64: ``sigma_max ... sigma_min`` then a final 0.

    ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i = 0 .. N-1``; ``rho = 7`` concentrates steps at low noise, where the fine
    structure (and the PDE residual) is decided.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PirfError(f"the number of sampler steps must be a positive integer, got {steps!r}")
    if not 0 < sigma_min < sigma_max:
        raise PirfError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    else:
        ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    low, high = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (high + ramp * (low - high)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
