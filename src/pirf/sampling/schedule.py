"""Noise levels of the EDM sampler (Karras et al. 2022, eq. 5) and their validation."""

from __future__ import annotations

import itertools

import torch

from pirf.errors import PirfError

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0


def karras_sigmas(
    steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """``steps + 1`` noise levels in float64: ``sigma_max ... sigma_min``, then a final 0.

    ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i = 0 .. N-1``. ``rho = 7`` concentrates the steps at low noise, where the fine
    structure (and with it the PDE residual) is decided. A single step (``N = 1``) goes
    from ``sigma_max`` straight to 0. Float64 so that the levels are the same everywhere;
    samplers read them as Python floats.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PirfError(f"the number of sampler steps must be a positive integer, got {steps!r}")
    if not 0 < sigma_min < sigma_max:
        raise PirfError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if not rho > 0:
        raise PirfError(f"rho must be positive, got {rho}")
    if steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    else:
        ramp = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    high, low = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    sigmas = (high + ramp * (low - high)) ** rho
    # The endpoints exactly, not within an ulp: the initial state is noise * sigma_max.
    sigmas[0] = sigma_max
    if steps > 1:
        sigmas[-1] = sigma_min
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def noise_levels(sigmas: torch.Tensor | list[float] | tuple[float, ...]) -> list[float]:
    """A schedule as Python floats, checked: at least two levels, positive and strictly
    decreasing except that the last may be 0."""
    levels = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if len(levels) < 2:
        raise PirfError(f"a noise schedule needs at least two levels, got {len(levels)}")
    if any(not s > 0 for s in levels[:-1]) or not levels[-1] >= 0:
        raise PirfError("noise levels must be positive (only the last one may be 0)")
    if any(not b < a for a, b in itertools.pairwise(levels)):
        raise PirfError("noise levels must decrease strictly")
    return levels
