"""Periodic spectral helpers along the last dimension of a tensor.

A periodic function on ``[0, length)`` is stored as ``n`` equispaced samples
``u[..., j] = u(j length / n)``; ``torch.fft.rfft`` gives its ``n // 2 + 1`` non-negative
Fourier modes ``k = 0 .. n // 2`` (angular wavenumber ``2 pi k / length``). These helpers
build the wavenumbers, the 2/3 de-aliasing mask of pseudo-spectral products, and
band-limited interpolation onto finer grids.
"""

from __future__ import annotations

import math

import torch

from pirf.errors import PirfError


def rfft_wavenumbers(
    n: int,
    length: float = 1.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Angular wavenumbers ``2 pi k / length`` of the ``n // 2 + 1`` modes of ``rfft``."""
    k = torch.arange(n // 2 + 1, dtype=dtype, device=device)
    return (2.0 * math.pi / length) * k


def two_thirds_mask(n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask of the ``rfft`` modes that survive the 2/3 de-aliasing rule: ``3 k < n``.

    If only modes ``|k| < n / 3`` are kept, the aliases of a quadratic product's modes
    (``|k| < 2 n / 3``) fall outside the kept band, so products are alias-free on it.
    """
    k = torch.arange(n // 2 + 1, device=device)
    return 3 * k < n


def fourier_upsample(u: torch.Tensor, n: int) -> torch.Tensor:
    """Band-limited (trigonometric) interpolation of periodic samples ``(..., m)`` onto
    ``n >= m`` equispaced points of the same period.

    The interpolant takes the given values at the coarse nodes (every ``n / m``-th fine node
    when ``m`` divides ``n``). For even ``m`` the Nyquist mode is interpolated by the real
    cosine ``cos(pi m x / L)`` (``L`` the period), so its coefficient is split between ``+-m/2``.
    """
    m = u.shape[-1]
    if n < m:
        raise PirfError(f"fourier_upsample needs n >= m; got n={n}, m={m}")
    if n == m:
        return u
    coefficients = torch.fft.rfft(u)
    if m % 2 == 0:
        coefficients = coefficients.clone()
        coefficients[..., -1] *= 0.5
    padded = torch.nn.functional.pad(coefficients, (0, n // 2 + 1 - coefficients.shape[-1]))
    return torch.fft.irfft(padded, n=n) * (n / m)


__all__ = [
    "fourier_upsample",
    "rfft_wavenumbers",
    "two_thirds_mask",
]
