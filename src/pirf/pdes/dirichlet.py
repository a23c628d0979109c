"""Linear Dirichlet problems ``(Laplacian + shift) u = a`` solved exactly by sine transforms.

Poisson (``shift = 0``) and Helmholtz (``shift = k^2``) share everything but the shift: the
channels ``(a, u)`` on the ``R x R`` nodes of the unit square (``h = 1 / (R - 1)``, boundary
nodes stored), a GRF source ``a``, ``u = 0`` on the boundary, and the discrete problem

    (Laplacian_h + shift) u = a    at the interior nodes,

with the five-point Laplacian. The type-I discrete sine transform diagonalises that operator
(:class:`~pirf.pdes.elliptic.DirichletSineSolver`), so the solver is exact up to rounding
and the residual (:meth:`SineDirichletPDE.residual`) is the very operator it inverts: data
has a residual at rounding level. The solution only depends on the interior values of
``a``; the boundary values of ``a`` are data like any other (the Helmholtz benchmark zeroes
them).
"""

from __future__ import annotations

import abc
import functools
import math
from typing import Any, ClassVar

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE, relative_l2
from pirf.pdes.elliptic import (
    DirichletSineSolver,
    interior,
    laplacian_5pt,
    with_zero_boundary,
)
from pirf.pdes.grf import cosine_grf
from pirf.pdes.reference import replicate_laplacian


@functools.lru_cache(maxsize=32)
def sine_solver(
    resolution: int, shift: float, dtype: torch.dtype, device: torch.device
) -> DirichletSineSolver:
    """The (cached) exact solver of ``(Laplacian_h + shift) v = f`` for one grid and dtype.

    Building a solver costs two ``n x n`` tables; caching them per
    ``(resolution, shift, dtype, device)`` keeps repeated batches (data generation, the
    consistency metric) from rebuilding them. Built outside inference mode, so that the
    cached tables also serve autograd later (the preconditioned reward).
    """
    with torch.inference_mode(False):
        return DirichletSineSolver(resolution, shift=shift, dtype=dtype, device=device)


def shifted_laplacian(u: torch.Tensor, shift: float) -> torch.Tensor:
    """``(Laplacian_h + shift) u`` at the interior nodes of full-grid ``u`` ``(..., R, R)``.

    Uses ``u``'s boundary values as stored; returns ``(..., R-2, R-2)``. Differentiable.
    """
    operator = laplacian_5pt(u)
    if shift != 0.0:
        operator = operator + shift * interior(u)
    return operator


def solve_dirichlet(a: torch.Tensor, shift: float) -> torch.Tensor:
    """Full-grid ``u`` ``(..., R, R)``, zero on the boundary, with ``(Laplacian_h + shift) u``
    equal to ``a`` at the interior nodes; in ``a``'s dtype and on its device. A sample's
    solution does not depend on its batch (see :meth:`DirichletSineSolver.transform`).
    """
    resolution = a.shape[-1]
    if a.ndim < 2 or a.shape[-2] != resolution:
        raise PirfError(f"expected a square grid (..., R, R), got {tuple(a.shape)}")
    solver = sine_solver(resolution, float(shift), a.dtype, a.device)
    if a.numel() == 0:
        return torch.zeros_like(a)
    return with_zero_boundary(solver.solve(interior(a)))


class SineDirichletPDE(PDE):
    """Base of the benchmarks ``(Laplacian + shift) u = a`` with ``u = 0`` on the boundary.

    Subclasses set ``name``, ``description`` and :attr:`shift`; parameters ``grf_alpha`` and
    ``grf_tau`` choose the GRF of the source. :attr:`zero_input_boundary` makes the input
    sampler (and :meth:`consistency`) set the source's boundary values to zero.
    """

    channels = ("a", "u")
    input_channels = ("a",)
    default_params: ClassVar[dict[str, Any]] = {"grf_alpha": 2.0, "grf_tau": 3.0}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"resolution": 32},
        "small": {"resolution": 64},
        "paper": {"resolution": 128},
    }
    # The stencil works from 3 nodes, but below 8 the GRF source is hardly resolved; 8 is
    # also the floor of the other unit-square benchmarks.
    min_resolution = 8
    zero_input_boundary: ClassVar[bool] = False
    """Whether the source ``a`` has zero boundary values (as drawn and as re-solved)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        alpha, tau = float(self._params["grf_alpha"]), float(self._params["grf_tau"])
        if not (alpha > 0.0 and tau > 0.0 and math.isfinite(alpha) and math.isfinite(tau)):
            raise PirfError(f"the GRF needs grf_alpha > 0 and grf_tau > 0; got {alpha}, {tau}")

    @property
    @abc.abstractmethod
    def shift(self) -> float:
        """The constant ``c`` of ``(Laplacian + c) u = a``."""

    # ----------------------------------------------------------------------------- physics
    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        """``(Laplacian_h + shift) u - a`` at the interior nodes, ``(B, 1, R-2, R-2)``.

        The five-point operator the solver inverts; uses ``u``'s boundary values as stored,
        so a generated ``u`` that misses its zero boundary shows in the residual next to it.
        """
        self.check_fields(fields)
        operator = shifted_laplacian(fields[:, 1], self.shift)
        return (operator - interior(fields[:, 0])).unsqueeze(1)

    def reference_residual(self, fields: torch.Tensor) -> torch.Tensor:
        """The reference code's residual, ``(B, 1, R, R)`` at every node: the five-point
        operator with ``h = 1 / (R - 1)`` after replicate padding
        (:func:`~pirf.pdes.reference.replicate_laplacian`), plus ``shift u``, minus ``a``.
        Inside it equals :meth:`residual`; on the boundary nodes it is
        ``(sum of the in-grid neighbours - 3 u) / h^2 + shift u - a``, which is not part of
        the problem (there ``u = 0`` is prescribed), so exact solutions score far from
        zero there."""
        self.check_fields(fields)
        a, u = fields[:, 0], fields[:, 1]
        spacing = 1.0 / (u.shape[-1] - 1)
        operator = replicate_laplacian(u, spacing)
        if self.shift != 0.0:
            operator = operator + self.shift * u
        return (operator - a).unsqueeze(1)

    def precondition(self, residual: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """``(Laplacian_h + shift)^-1 R`` on the interior nodes, by the exact sine solver:
        for these linear problems exactly ``u`` minus the solution for the fields' ``a``
        (with ``u``'s boundary values as stored). ``(B, 1, R-2, R-2)``."""
        resolution = residual.shape[-1] + 2
        solver = sine_solver(resolution, float(self.shift), residual.dtype, residual.device)
        return solver.solve(residual)

    # ----------------------------------------------------------------------------- data
    def admissible_inputs(self, a: torch.Tensor) -> torch.Tensor:
        """``a`` ``(..., R, R)`` as the benchmark defines it: boundary values set to zero
        if :attr:`zero_input_boundary`, else unchanged."""
        return with_zero_boundary(interior(a)) if self.zero_input_boundary else a

    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        """Sources ``a ~ GRF(grf_alpha, grf_tau)`` ``(B, 1, R, R)``, float64 on the CPU."""
        self.check_resolution(resolution)
        field = cosine_grf(
            generators,
            resolution,
            float(self._params["grf_alpha"]),
            float(self._params["grf_tau"]),
        )
        return self.admissible_inputs(field).unsqueeze(1)

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """Fields ``(B, 2, R, R)`` (``a`` as given, ``u``) for sources ``(B, 1, R, R)`` or
        ``(B, R, R)``, in their dtype and on their device. Exact up to rounding."""
        a = inputs[:, 0] if inputs.ndim == 4 and inputs.shape[1] == 1 else inputs
        if a.ndim != 3 or a.shape[-1] != a.shape[-2]:
            raise PirfError(
                f"{type(self).__name__} inputs must be (B, 1, R, R); got {tuple(inputs.shape)}"
            )
        self.check_resolution(a.shape[-1])
        return torch.stack([a, solve_dirichlet(a, self.shift)], dim=1)

    def consistency(self, fields: torch.Tensor) -> torch.Tensor:
        """Relative L2 distance ``(B,)`` between ``u`` and the solution for the fields' ``a``
        (made admissible first, as the input sampler makes it)."""
        self.check_fields(fields)
        solved = solve_dirichlet(self.admissible_inputs(fields[:, 0]), self.shift)
        return relative_l2(fields[:, 1], solved)


__all__ = ["SineDirichletPDE", "shifted_laplacian", "sine_solver", "solve_dirichlet"]
