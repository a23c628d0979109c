"""Helmholtz: ``Laplacian(u) + k^2 u = a`` on the unit square, ``u = 0`` on the boundary.

The benchmark (DiffusionPDE's Helmholtz data) uses ``k = 1`` and a source ``a ~ GRF(2, 3)``
whose boundary values are set to zero; the sample is the pair ``(a, u)`` on the ``R x R``
nodes, ``h = 1 / (R - 1)``. The five-point operator ``Laplacian_h + k^2`` is solved exactly
by sine transforms and is also the residual; see :mod:`pirf.pdes.dirichlet`.

The problem is well posed unless ``k^2`` is an eigenvalue of ``-Laplacian_h`` (the smallest
is about ``2 pi^2``, so any ``k < 4.4`` is safe); the solver refuses an exact hit, and near
one the solution is large and sensitive, as in the continuous problem.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pirf.errors import PirfError
from pirf.pdes.dirichlet import SineDirichletPDE


class Helmholtz(SineDirichletPDE):
    """``Laplacian(u) + k^2 u = a``, ``u = 0`` on the boundary, ``k = wavenumber``; ``a`` is
    a GRF(grf_alpha, grf_tau) draw with zero boundary values."""

    name = "helmholtz"
    description = (
        "laplacian(u) + k^2 u = a on the unit square, k = 1, u = 0 on the boundary, "
        "a ~ GRF(2, 3) with zero boundary"
    )
    default_params: ClassVar[dict[str, Any]] = {
        "wavenumber": 1.0,
        **SineDirichletPDE.default_params,
    }
    zero_input_boundary = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        wavenumber = float(self._params["wavenumber"])
        if not math.isfinite(wavenumber):
            raise PirfError(f"Helmholtz needs a finite wavenumber; got {wavenumber}")

    @property
    def wavenumber(self) -> float:
        """``k`` of ``Laplacian(u) + k^2 u = a``."""
        return float(self._params["wavenumber"])

    @property
    def shift(self) -> float:
        """``k^2``."""
        return self.wavenumber**2


__all__ = ["Helmholtz"]
