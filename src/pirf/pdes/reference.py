"""Residuals as the PIRF paper's public code defines them, to compare numbers with it.

pirf's own residuals (``PDE.residual``) are the discrete operators its solvers invert, on
the points where they are defined, so exact solutions score at rounding or truncation
level. The reference code (the ``reward/pde.py`` and ``reward/grad_utils.py`` modules of
the PIRF repository, built on DiffusionPDE and PG-Diffusion) scores **every pixel of the
full grid**, pads the boundary, and takes its own pixel spacing; its numbers are therefore
not pirf's. These functions reproduce its definitions on physical fields ``(B, C, H, W)``
(in their dtype; the reference computes in float32), with the PDE's parameters where the
reference hard-codes the benchmark's (``f = 1``, ``k = 1``, ``nu = 0.01``, ``Re = 1000``):

* **Poisson, Helmholtz**: the five-point Laplacian with ``h = 1 / (R - 1)`` at every node,
  boundary nodes included, after **replicate** padding (a missing neighbour takes the
  node's own value), minus ``a`` (plus ``k^2 u``): :func:`replicate_laplacian`.
* **Darcy**: ``-a u_xx - a_x u_x - a u_yy - a_y u_y - f`` (the non-conservative form) with
  ``h = 1 / R`` (pixels as cells, although the data are nodes with ``h = 1 / (R - 1)``):
  second-order central differences inside, the one-sided second-order stencils of
  ``findiff`` (``acc=2``) on the first and last row and column (:func:`derivative`).
* **Burgers**: ``u_t + u u_x - nu u_xx`` with ``dt = dx = 1 / R``; ``u_t`` and ``u_x`` are
  central differences after **replicate** padding of their axis (``x`` is not treated as
  periodic), and ``u_xx`` is the same central difference applied to ``u_x`` (a stencil of
  width 5, ``(u[j+2] - 2 u[j] + u[j-2]) / (4 dx^2)`` inside): :func:`burgers_reference`.
* **Kolmogorov**: the vorticity residual with spectral derivatives of the middle frame and
  the pointwise advection product, **not de-aliased**; the Nyquist modes are kept (their
  ``i k`` included) and the mean mode of the Laplacian is ``-w_hat(0)`` (the reference
  sets ``|k|^2 = 1`` there to avoid a division by zero): :func:`kolmogorov_reference`.

Mean squares over all of these points are what the paper's tables report; docs/evaluation.md
lists how they differ from pirf's and their values on pirf's exact data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FORWARD_FIRST = (-1.5, 2.0, -0.5)
"""``findiff``'s one-sided first derivative of second order: offsets 0, 1, 2 (times 1/h)."""
FORWARD_SECOND = (2.0, -5.0, 4.0, -1.0)
"""``findiff``'s one-sided second derivative of second order: offsets 0..3 (times 1/h^2)."""


def replicate_laplacian(u: torch.Tensor, spacing: float) -> torch.Tensor:
    """Five-point Laplacian at every node of ``u`` ``(..., H, W)`` after replicate padding:
    at a boundary node the missing neighbour is the node itself. Same shape as ``u``."""
    shape = u.shape
    flat = u.reshape(-1, 1, *shape[-2:])
    padded = F.pad(flat, (1, 1, 1, 1), mode="replicate")
    neighbours = (
        padded[..., :-2, 1:-1]
        + padded[..., 2:, 1:-1]
        + padded[..., 1:-1, :-2]
        + padded[..., 1:-1, 2:]
    )
    return ((neighbours - 4.0 * flat) / spacing**2).reshape(shape)


def _along(values: torch.Tensor, dim: int) -> torch.Tensor:
    return values.movedim(dim, -1)


def derivative(u: torch.Tensor, dim: int, spacing: float, order: int) -> torch.Tensor:
    """First (``order=1``) or second (``order=2``) derivative of ``u`` along ``dim``, second
    order accurate: central inside, one-sided (:data:`FORWARD_FIRST`,
    :data:`FORWARD_SECOND`, mirrored at the upper end) at both ends. Same shape as ``u``;
    needs at least 4 points along ``dim``."""
    x = _along(u, dim)
    if order == 1:
        inner = (x[..., 2:] - x[..., :-2]) / (2.0 * spacing)
        weights = FORWARD_FIRST
        scale = spacing
    else:
        inner = (x[..., 2:] - 2.0 * x[..., 1:-1] + x[..., :-2]) / spacing**2
        weights = FORWARD_SECOND
        scale = spacing**2
    low = sum(w * x[..., k] for k, w in enumerate(weights)) / scale
    # The backward stencil is the forward one mirrored: the sign flips for odd orders.
    sign = -1.0 if order == 1 else 1.0
    high = sign * sum(w * x[..., -1 - k] for k, w in enumerate(weights)) / scale
    out = torch.cat([low.unsqueeze(-1), inner, high.unsqueeze(-1)], dim=-1)
    return out.movedim(-1, dim)


def darcy_reference(a: torch.Tensor, u: torch.Tensor, forcing: float) -> torch.Tensor:
    """``-a u_xx - a_x u_x - a u_yy - a_y u_y - f`` at every pixel of ``a``, ``u``
    ``(..., R, R)``, with ``h = 1 / R`` and :func:`derivative`'s stencils."""
    spacing = 1.0 / u.shape[-1]
    terms = []
    for dim in (-2, -1):
        u_1 = derivative(u, dim, spacing, 1)
        u_2 = derivative(u, dim, spacing, 2)
        a_1 = derivative(a, dim, spacing, 1)
        terms.append(-a * u_2 - a_1 * u_1)
    return terms[0] + terms[1] - forcing


def _replicate_central(u: torch.Tensor, dim: int, spacing: float) -> torch.Tensor:
    """``(u[i+1] - u[i-1]) / (2 h)`` along ``dim`` after replicate padding of that axis."""
    x = _along(u, dim)
    padded = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
    return ((padded[..., 2:] - padded[..., :-2]) / (2.0 * spacing)).movedim(-1, dim)


def burgers_reference(u: torch.Tensor, viscosity: float) -> torch.Tensor:
    """``u_t + u u_x - nu u_xx`` at every point of ``u`` ``(..., T, X)`` (time on dim -2),
    with ``dt = dx = 1 / X`` and replicate padding (see the module docstring)."""
    step = 1.0 / u.shape[-1]
    u_t = _replicate_central(u, -2, step)
    u_x = _replicate_central(u, -1, step)
    u_xx = _replicate_central(u_x, -1, step)
    return u_t + u * u_x - viscosity * u_xx


def kolmogorov_reference(
    fields: torch.Tensor,
    *,
    reynolds: float,
    drag: float,
    forcing_amplitude: float,
    forcing_wavenumber: int,
    frame_dt: float,
) -> torch.Tensor:
    """The vorticity residual of frames ``(B, 3, N, N)`` on ``(0, 2 pi)^2`` as the reference
    computes it, ``(B, 1, N, N)``: ``(w2 - w0) / (2 dt) + u w_x + v w_y - lap(w1) / Re +
    drag w1 - f`` with ``f = -A cos(k_f y)``, spectral derivatives of ``w1`` (full ``fft2``,
    integer wavenumbers ``0 .. N/2 - 1, -N/2 .. -1``, inverse through ``irfft2`` of the first
    ``N/2 + 1`` columns) and the product not de-aliased."""
    w = fields[:, 1:-1]
    n = w.shape[-1]
    k_max = n // 2
    device = w.device
    real = w.dtype
    index = torch.cat(
        (torch.arange(0, k_max, device=device), torch.arange(-k_max, 0, device=device))
    ).to(real)
    k_x = index.reshape(n, 1).expand(n, n)
    k_y = index.reshape(1, n).expand(n, n)
    lap = k_x**2 + k_y**2
    lap = torch.where((k_x == 0) & (k_y == 0), torch.ones_like(lap), lap)
    w_h = torch.fft.fft2(w, dim=(-2, -1))
    psi_h = w_h / lap

    def grid(spectrum: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(spectrum[..., :, : k_max + 1], dim=(-2, -1))

    u = grid(1j * k_y * psi_h)
    v = grid(-1j * k_x * psi_h)
    w_x = grid(1j * k_x * w_h)
    w_y = grid(1j * k_y * w_h)
    w_lap = grid(-lap * w_h)
    advection = u * w_x + v * w_y
    w_t = (fields[:, 2:] - fields[:, :-2]) / (2.0 * frame_dt)
    y = torch.linspace(0.0, 2.0 * math.pi, n + 1, dtype=real, device=device)[:-1]
    forcing = -forcing_amplitude * torch.cos(forcing_wavenumber * y).reshape(1, 1, 1, n)
    return w_t + (advection - w_lap / reynolds + drag * w) - forcing


__all__ = [
    "FORWARD_FIRST",
    "FORWARD_SECOND",
    "burgers_reference",
    "darcy_reference",
    "derivative",
    "kolmogorov_reference",
    "replicate_laplacian",
]
