"""Poisson: ``Laplacian(u) = a`` on the unit square, ``u = 0`` on the boundary.

The benchmark (DiffusionPDE's Poisson data) draws the source ``a ~ GRF(2, 3)``; the sample
is the pair ``(a, u)`` on the ``R x R`` nodes, ``h = 1 / (R - 1)``. The five-point Laplacian
is solved exactly by sine transforms and is also the residual; see
:mod:`pirf.pdes.dirichlet`.
"""

from __future__ import annotations

from pirf.pdes.dirichlet import SineDirichletPDE


class Poisson(SineDirichletPDE):
    """``Laplacian(u) = a``, ``u = 0`` on the boundary, ``a ~ GRF(grf_alpha, grf_tau)``."""

    name = "poisson"
    description = "laplacian(u) = a on the unit square, u = 0 on the boundary, a ~ GRF(2, 3)"

    @property
    def shift(self) -> float:
        """Zero: the plain Laplacian."""
        return 0.0


__all__ = ["Poisson"]
