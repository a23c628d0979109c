"""Random initial vorticity for Kolmogorov-flow trajectories.

A random-phase Gaussian field on ``(0, 2 pi)^2`` made of the Fourier modes ``|k| <= K``,
``K = ceil(3 k0)``:

    w(x) = c  sum_{k in [-K, K]^2}  a(|k|) (xi_k cos(k . x) + eta_k sin(k . x)),
    a(k) = k exp(-k^2 / (2 k0^2)),     xi_k, eta_k ~ N(0, 1),

so the enstrophy spectrum ``a(k)^2 k`` peaks near ``k0`` (the forcing scale by default) and
is negligible at ``K`` (``a(3 k0) / max a < 0.04``). The constant ``c`` makes the *expected*
root-mean-square vorticity equal to ``rms``. The draw (``2 (2K+1)^2`` normals per unit, on
the CPU in float64 from the unit's own generator) does not depend on the grid: a field is
the same function sampled at any resolution (the solver then keeps its 2/3 band). Spin-up
forgets the field's details; its job is to start every trajectory somewhere different.
"""

from __future__ import annotations

import math

import torch

from pirf.seeding import stacked_normal


def initial_modes(peak_wavenumber: float) -> int:
    """The largest wavenumber ``K`` per axis that the random field uses."""
    return math.ceil(3.0 * peak_wavenumber)


def mode_amplitudes(peak_wavenumber: float) -> torch.Tensor:
    """Amplitudes ``a(|k|)`` ``(2K+1, 2K+1)`` for ``k`` in ``[-K, K]^2`` (0 where ``|k| > K``)."""
    modes = initial_modes(peak_wavenumber)
    k = torch.arange(-modes, modes + 1, dtype=torch.float64)
    magnitude = (k[:, None] ** 2 + k[None, :] ** 2).sqrt()
    amplitude = magnitude * torch.exp(-(magnitude**2) / (2.0 * peak_wavenumber**2))
    return torch.where(magnitude <= modes, amplitude, torch.zeros_like(amplitude))


def random_vorticity(
    generators: list[torch.Generator],
    resolution: int,
    *,
    peak_wavenumber: float = 4.0,
    rms: float = 1.0,
) -> torch.Tensor:
    """Random initial vorticity ``(len(generators), R, R)``, float64 on the CPU.

    Sampled on the periodic grid ``x_i = 2 pi i / R`` (``field[..., i, j] = w(x_i, y_j)``);
    see the module docstring for the distribution.
    """
    amplitude = mode_amplitudes(peak_wavenumber)
    modes = initial_modes(peak_wavenumber)
    count = 2 * modes + 1
    # E[mean(w^2)] = sum_k a_k^2: a pair (k, -k) of terms has mean square 2 a_k^2 on average.
    scale = rms / float((amplitude**2).sum().sqrt())
    k = torch.arange(-modes, modes + 1, dtype=torch.float64)
    points = 2.0 * math.pi * torch.arange(resolution, dtype=torch.float64) / resolution
    phase = points[:, None] * k[None, :]
    cos, sin = torch.cos(phase), torch.sin(phase)
    fields = []
    for draws in stacked_normal(generators, (2, count, count)):
        # One field at a time: a batched matmul's rounding may depend on the batch size.
        cosine_part = scale * amplitude * draws[0]
        sine_part = scale * amplitude * draws[1]
        # cos(k.x) = cos cos - sin sin and sin(k.x) = sin cos + cos sin, separably in x, y.
        fields.append(
            cos @ cosine_part @ cos.T
            - sin @ cosine_part @ sin.T
            + sin @ sine_part @ cos.T
            + cos @ sine_part @ sin.T
        )
    if not fields:
        return torch.empty(0, resolution, resolution, dtype=torch.float64)
    return torch.stack(fields)


__all__ = ["initial_modes", "mode_amplitudes", "random_vorticity"]
