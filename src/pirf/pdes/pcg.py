"""Batched preconditioned conjugate gradients with per-sample stopping.

Solves ``A x = b`` for a batch of independent symmetric positive definite systems at once:
dimension 0 of every tensor is the sample, the rest is one sample's unknowns. ``A`` and the
preconditioner ``M^-1`` are callables that act on each sample separately.

Every sample keeps its own step sizes and stops on its own: once its residual meets the
tolerance it is frozen (masked out of all updates), so a sample's result never depends on
which other samples share its batch. The recursively updated residual of CG drifts from the
true one ``b - A x`` in finite precision; before a sample is declared converged its true
residual is recomputed and, if it misses the tolerance, the sample restarts from it
(residual replacement) instead of stopping early.

Convergence is measured in the norm of the preconditioner's inverse,
``sqrt(r^T M^-1 r) / sqrt(b^T M^-1 b)``. When ``M`` is spectrally equivalent to ``A`` this is,
within the equivalence constants, the relative error of ``x`` in the energy norm: unlike the
plain Euclidean residual it does not grow with the grid's condition number, so the same
tolerance is meaningful (and reachable in float32) at every resolution. It also costs nothing:
``r^T M^-1 r`` is the scalar CG needs anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from pirf.errors import PirfError

LinearMap = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_RTOL: dict[torch.dtype, float] = {
    torch.float64: 1e-11,
    torch.float32: 1e-6,
}
"""Relative tolerance per dtype when none is given. In float64, 1e-11 is far below any
discretisation error yet well above rounding; in float32, rounding the solution itself costs
a few times 1e-7, so callers on large grids should loosen it (see ``darcy_default_rtol``)."""


class PCGResult(NamedTuple):
    """What :func:`pcg` returns; all per-sample tensors have shape ``(B,)``."""

    solution: torch.Tensor
    """The solutions, same shape as the right-hand side."""
    iterations: torch.Tensor
    """CG iterations each sample took (int64)."""
    relative_residual: torch.Tensor
    """Final true residual ``sqrt(r^T M^-1 r / b^T M^-1 b)`` of each sample."""


def default_rtol(dtype: torch.dtype) -> float:
    """The default relative tolerance for ``dtype`` (see :data:`DEFAULT_RTOL`)."""
    if dtype not in DEFAULT_RTOL:
        raise PirfError(f"conjugate gradients supports float32 and float64, not {dtype}")
    return DEFAULT_RTOL[dtype]


def cg_iteration_bound(condition_number: float, rtol: float) -> int:
    """Iterations after which CG's classical bound guarantees a relative reduction ``rtol``.

    ``2 ((sqrt(k) - 1) / (sqrt(k) + 1))^m <= rtol`` for condition number ``k``; the factor
    ``sqrt(k)`` more allows for measuring the residual rather than the energy-norm error.
    """
    root = math.sqrt(max(condition_number, 1.0))
    rate = (root - 1.0) / (root + 1.0)
    if rate <= 0.0:
        return 1
    return math.ceil(math.log(rtol / (2.0 * root)) / math.log(rate))


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample inner products ``(B,)``."""
    return (x * y).flatten(1).sum(dim=1)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(B,)`` so that it broadcasts against ``like`` ``(B, ...)``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def pcg(
    operator: LinearMap,
    preconditioner: LinearMap,
    rhs: torch.Tensor,
    *,
    rtol: float | None = None,
    max_iterations: int = 500,
) -> PCGResult:
    """Solve ``operator(x) = rhs`` per sample by preconditioned conjugate gradients.

    ``operator`` and ``preconditioner`` (which applies ``M^-1``) must be symmetric positive
    definite per sample and act on tensors shaped like ``rhs`` ``(B, ...)``. Starts from
    ``x = 0``. Raises :class:`PirfError` if some sample has not converged after
    ``max_iterations`` iterations.
    """
    if rhs.ndim < 2:
        raise PirfError(f"pcg expects a batch (B, ...) of right-hand sides, got {tuple(rhs.shape)}")
    rtol = default_rtol(rhs.dtype) if rtol is None else rtol
    if not 0.0 < rtol < 1.0:
        raise PirfError(f"the relative tolerance must lie in (0, 1), got {rtol}")
    batch = rhs.shape[0]
    threshold = rtol**2

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = preconditioner(r)
    rz = _dot(r, z)
    reference = rz.clone()  # b^T M^-1 b: the scale the tolerance is relative to
    active = rz > threshold * reference
    p = z.clone()
    iterations = torch.zeros(batch, dtype=torch.int64, device=rhs.device)

    step = 0
    while bool(active.any()):
        if step == max_iterations:
            worst = torch.sqrt(rz / reference.clamp_min(torch.finfo(rhs.dtype).tiny)).max()
            raise PirfError(
                f"conjugate gradients did not converge in {max_iterations} iterations "
                f"({int(active.sum())} of {batch} samples left, worst relative residual "
                f"{float(worst):.2e} > {rtol:.1e}); raise max_iterations or loosen rtol"
            )
        step += 1
        iterations += active.to(torch.int64)
        wide = _per_sample(active, rhs)

        q = operator(p)
        pq = _dot(p, q)
        alpha = torch.where(active, rz / torch.where(active, pq, torch.ones_like(pq)), 0.0)
        x = torch.where(wide, x + _per_sample(alpha, x) * p, x)
        r = torch.where(wide, r - _per_sample(alpha, r) * q, r)
        z = preconditioner(r)
        rz_new = _dot(r, z)

        # Candidates for stopping: confirm on the true residual, restart those that miss.
        candidate = active & (rz_new <= threshold * reference)
        restart = torch.zeros_like(active)
        if bool(candidate.any()):
            true_r = rhs - operator(x)
            true_z = preconditioner(true_r)
            true_rz = _dot(true_r, true_z)
            converged = candidate & (true_rz <= threshold * reference)
            restart = candidate & ~converged
            wide_candidate = _per_sample(candidate, r)
            r = torch.where(wide_candidate, true_r, r)
            z = torch.where(wide_candidate, true_z, z)
            rz_new = torch.where(candidate, true_rz, rz_new)
            active = active & ~converged

        keep_direction = active & ~restart
        safe_rz = torch.where(active, rz, torch.ones_like(rz))
        beta = torch.where(keep_direction, rz_new / safe_rz, 0.0)
        p = torch.where(_per_sample(active, p), z + _per_sample(beta, p) * p, p)
        rz = torch.where(active | candidate, rz_new, rz)

    relative = torch.sqrt(rz.clamp_min(0.0) / reference.clamp_min(torch.finfo(rhs.dtype).tiny))
    return PCGResult(solution=x, iterations=iterations, relative_residual=relative)
