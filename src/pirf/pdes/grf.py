"""Gaussian random fields, sampled spectrally.

``GRF(alpha, tau)`` is a zero-mean Gaussian field whose covariance operator is
``tau^(2 alpha - 2) (-Laplacian + tau^2 I)^(-alpha)``, the convention of the FNO data
generators used by DiffusionPDE. It is sampled as a Karhunen-Loeve sum over the
L2-orthonormal eigenfunctions ``phi_k`` of the Laplacian,

    f(x) = sum_k  tau^(alpha-1) (lambda_k + tau^2)^(-alpha/2)  xi_k  phi_k(x),   xi_k ~ N(0, 1),

with the constant mode dropped (zero mean). Draws use one generator per sample (see
:mod:`pirf.seeding`), so a sample never depends on the batch it was drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pirf.seeding import stacked_normal


def cosine_grf_coefficients(modes: int, alpha: float, tau: float) -> torch.Tensor:
    """KL amplitudes ``(modes, modes)`` of GRF(alpha, tau) on the unit square (Neumann basis).

    The Neumann eigenfunctions are ``cos(pi k1 x) cos(pi k2 y)`` with eigenvalues
    ``pi^2 (k1^2 + k2^2)``; entry ``[0, 0]`` (the mean) is zero.
    """
    k = torch.arange(modes, dtype=torch.float64)
    eigenvalues = math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    amplitude = tau ** (alpha - 1) * (eigenvalues + tau**2) ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    return amplitude


def cosine_basis(points: torch.Tensor, modes: int) -> torch.Tensor:
    """L2(0,1)-orthonormal Neumann eigenfunctions at ``points``: shape ``(len(points), modes)``.

    ``phi_0 = 1`` and ``phi_k = sqrt(2) cos(pi k x)`` for ``k >= 1``.
    """
    k = torch.arange(modes, dtype=points.dtype, device=points.device)
    basis = torch.cos(math.pi * points[:, None] * k[None, :])
    basis[:, 1:] *= math.sqrt(2.0)
    return basis


def cosine_grf(
    generators: list[torch.Generator],
    resolution: int,
    alpha: float = 2.0,
    tau: float = 3.0,
    *,
    modes: int | None = None,
) -> torch.Tensor:
    """GRF(alpha, tau) on the unit square's ``resolution x resolution`` nodes (h = 1/(R-1)).

    Returns float64 ``(len(generators), R, R)`` on the CPU. ``modes`` (default ``R``) is the
    number of cosine modes per axis; the draw of a sample depends on ``modes`` but not on
    the batch.
    """
    modes = resolution if modes is None else modes
    amplitude = cosine_grf_coefficients(modes, alpha, tau)
    xi = stacked_normal(generators, (modes, modes))
    nodes = torch.linspace(0.0, 1.0, resolution, dtype=torch.float64)
    basis = cosine_basis(nodes, modes)
    return _per_sample(lambda coefficients: basis @ coefficients @ basis.T, amplitude * xi)


def periodic_grf_1d(
    generators: list[torch.Generator],
    points: torch.Tensor,
    gamma: float,
    tau: float,
    sigma: float,
    *,
    modes: int,
) -> torch.Tensor:
    """Periodic GRF on [0, 1) at ``points``, amplitude ``sigma (4 pi^2 k^2 + tau^2)^(-gamma/2)``.

    ``f(x) = sum_{k=1}^{modes} a_k (xi_k sqrt(2) cos(2 pi k x) + eta_k sqrt(2) sin(2 pi k x))``,
    the KL sum of covariance ``sigma^2 (-Laplacian + tau^2)^(-gamma)`` without its mean mode
    (the FNO Burgers initial condition). Returns float64 ``(len(generators), len(points))``.
    """
    k = torch.arange(1, modes + 1, dtype=torch.float64)
    amplitude = sigma * (4 * math.pi**2 * k**2 + tau**2) ** (-gamma / 2)
    xi = stacked_normal(generators, (2, modes))
    phase = 2 * math.pi * points.to(torch.float64)[:, None] * k[None, :]
    cos_basis = math.sqrt(2.0) * torch.cos(phase)
    sin_basis = math.sqrt(2.0) * torch.sin(phase)
    return _per_sample(
        lambda pair: (pair[0] * amplitude) @ cos_basis.T + (pair[1] * amplitude) @ sin_basis.T,
        xi,
    )


def _per_sample(
    synthesis: Callable[[torch.Tensor], torch.Tensor], coefficients: torch.Tensor
) -> torch.Tensor:
    """Apply ``synthesis`` to each sample's coefficients ``coefficients[i]`` and stack.

    One matrix product per sample rather than one batched product: BLAS picks its kernels
    (and with them the rounding) by the operands' shapes, so a batched product can give a
    sample different last bits depending on how many samples share the batch.
    """
    return torch.stack([synthesis(sample) for sample in coefficients])
