"""Two-sample distances between sets of feature vectors: MMD and energy distance.

Both are computed from matrices of pairwise squared Euclidean distances, so one pass over
the features serves every kernel, every statistic and every subset of the sets.

* ``MMD^2`` (biased V-statistic, never negative) with a fixed kernel: the average of
  Gaussian kernels ``exp(-d^2 / (2 b scale))`` over relative bandwidths ``b`` in
  :data:`BANDWIDTHS`, where ``scale`` is a fixed typical squared distance (the evaluation
  uses the reference set's mean squared pairwise distance). With ``b = 1/2`` the kernel is
  the median heuristic's; a factor 4 either side keeps it sensitive both to near-duplicate
  samples and to shifts of the bulk. Each kernel is 1 on the diagonal, so ``MMD^2`` lies
  in ``[0, 2]``.
* Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (V-statistic, also never
  negative because the Euclidean distance is of negative type), in the units of the
  features; it needs no bandwidth.

Pairwise distances come from ``|x|^2 + |y|^2 - 2 x.y`` with every product accumulated in
float64 (the features may be stored in float32), in blocks of ``batch_size`` rows, so
thousands of 50k-dimensional samples need only a few blocks of memory at a time.
"""

from __future__ import annotations

import torch

BANDWIDTHS: tuple[float, ...] = (0.125, 0.5, 2.0)
"""Gaussian kernel variances relative to ``scale``: ``k(d) = mean_b exp(-d^2 / (2 b scale))``."""


def pairwise_sq_distances(
    x: torch.Tensor, y: torch.Tensor | None = None, *, batch_size: int = 512
) -> torch.Tensor:
    """Squared Euclidean distances ``(n, m)`` between the rows of ``x (n, D)`` and ``y (m, D)``.

    ``y=None`` means ``y = x``; then the diagonal is exactly zero. Computed in float64 blocks
    of ``batch_size`` rows on the inputs' device; rounding can only make entries slightly
    too small, and they are clamped at zero.
    """
    same = y is None
    y = x if y is None else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"expected (n, D) and (m, D) features, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    out = torch.empty((x.shape[0], y.shape[0]), dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[0], batch_size):
        xi = x[i : i + batch_size].to(torch.float64)
        xi_sq = xi.pow(2).sum(dim=1, keepdim=True)
        # For y = x only the blocks on and above the diagonal are computed, then mirrored.
        for j in range(i if same else 0, y.shape[0], batch_size):
            yj = xi if same and i == j else y[j : j + batch_size].to(torch.float64)
            block = (xi_sq + yj.pow(2).sum(dim=1)[None, :] - 2.0 * (xi @ yj.T)).clamp_min(0.0)
            if same and j == i:
                block = 0.5 * (block + block.T)  # a product x x^T is not exactly symmetric
            out[i : i + batch_size, j : j + batch_size] = block
            if same and j != i:
                out[j : j + batch_size, i : i + batch_size] = block.T
    if same:
        out.fill_diagonal_(0.0)
    return out


def gaussian_kernel(
    sq_distances: torch.Tensor, scale: float, bandwidths: tuple[float, ...] = BANDWIDTHS
) -> torch.Tensor:
    """The averaged Gaussian kernel of :data:`BANDWIDTHS` applied to squared distances."""
    if not scale > 0:
        raise ValueError(f"the kernel scale must be positive, got {scale}")
    values = torch.zeros_like(sq_distances)
    for bandwidth in bandwidths:
        values += torch.exp(-sq_distances / (2.0 * bandwidth * scale))
    return values / len(bandwidths)


def mmd_from_kernels(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> float:
    """Biased ``MMD^2 = mean k_xx + mean k_yy - 2 mean k_xy`` (diagonals included)."""
    return float(k_xx.mean() + k_yy.mean() - 2.0 * k_xy.mean())


def energy_from_sq_distances(d_xx: torch.Tensor, d_yy: torch.Tensor, d_xy: torch.Tensor) -> float:
    """V-statistic energy distance from squared-distance matrices."""
    return float(2.0 * d_xy.sqrt().mean() - d_xx.sqrt().mean() - d_yy.sqrt().mean())


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float,
    *,
    bandwidths: tuple[float, ...] = BANDWIDTHS,
    batch_size: int = 512,
) -> float:
    """Biased ``MMD^2`` between feature sets ``x (n, D)`` and ``y (m, D)``; see the module
    docstring. ``scale`` sets the kernel's squared-distance unit."""
    kernels = [
        gaussian_kernel(pairwise_sq_distances(a, b, batch_size=batch_size), scale, bandwidths)
        for a, b in ((x, None), (y, None), (x, y))
    ]
    return mmd_from_kernels(*kernels)


def energy_distance(x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512) -> float:
    """V-statistic energy distance between feature sets ``x (n, D)`` and ``y (m, D)``."""
    return energy_from_sq_distances(
        pairwise_sq_distances(x, batch_size=batch_size),
        pairwise_sq_distances(y, batch_size=batch_size),
        pairwise_sq_distances(x, y, batch_size=batch_size),
    )


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    """Mean of the off-diagonal entries of a square matrix (0 for a 1 x 1 matrix)."""
    n = matrix.shape[0]
    if n < 2:
        return 0.0
    return float((matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1)))
