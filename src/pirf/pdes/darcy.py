"""Darcy flow: ``-div(a grad u) = f`` on the unit square, ``u = 0`` on the boundary.

The benchmark (DiffusionPDE's Darcy data) uses ``f = 1`` and a binary permeability:
``a = 12`` where a GRF(2, 3) draw is non-negative, ``a = 3`` elsewhere. Fields live on the
``R x R`` nodes of the unit square, ``h = 1 / (R - 1)``, boundary nodes included.

Discretisation: a conservative five-point finite-volume operator with harmonic-mean face
coefficients,

    (A u)_i = (1 / h^2) sum_{nb} a_{i,nb} (u_i - u_nb),    a_{i,nb} = 2 a_i a_nb / (a_i + a_nb),

(per-axis spacings on a rectangular grid). The harmonic mean is the exact series conductance
of two cells, so fluxes stay consistent across the jumps of a binary ``a``, and ``A`` is
symmetric positive definite for ``a > 0``. The *same* operator is the residual
(:meth:`Darcy.residual`), so solver output has a residual at solver tolerance.

Solver: conjugate gradients batched over samples, preconditioned by the exact DST Poisson
solver scaled by the sample's mean coefficient. The face coefficients lie between ``min a``
and ``max a``, so the preconditioned operator's condition number is at most
``max a / min a`` (4 for the benchmark) whatever the resolution: about 25 iterations reach
1e-11 in float64 at every grid size.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE, relative_l2
from pirf.pdes.dirichlet import sine_solver
from pirf.pdes.elliptic import DirichletSineSolver, node_spacing, with_zero_boundary
from pirf.pdes.grf import cosine_grf
from pirf.pdes.pcg import PCGResult, cg_iteration_bound, default_rtol, pcg
from pirf.pdes.reference import darcy_reference

COEFFICIENT_FLOOR = 0.5
"""In a differentiable residual, ``a`` is clamped below at this fraction of ``a_low``."""


def harmonic_face_coefficients(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Face coefficients ``2 a_i a_j / (a_i + a_j)`` between neighbouring nodes of ``a``.

    ``a`` is ``(..., H, W)``; returns the faces along dim -2, ``(..., H-1, W)``, and along
    dim -1, ``(..., H, W-1)``. Requires ``a > 0`` (a coefficient of a well-posed problem).
    """
    first = 2.0 * a[..., 1:, :] * a[..., :-1, :] / (a[..., 1:, :] + a[..., :-1, :])
    second = 2.0 * a[..., :, 1:] * a[..., :, :-1] / (a[..., :, 1:] + a[..., :, :-1])
    return first, second


def flux_divergence(
    faces: tuple[torch.Tensor, torch.Tensor], u: torch.Tensor, spacing: tuple[float, float]
) -> torch.Tensor:
    """``-div(a grad u)`` at the interior nodes, from face coefficients and full-grid ``u``.

    ``u`` is ``(..., H, W)`` with its boundary values as stored; returns ``(..., H-2, W-2)``.
    """
    h0, h1 = spacing
    flux0 = faces[0] * (u[..., 1:, :] - u[..., :-1, :]) / h0
    flux1 = faces[1] * (u[..., :, 1:] - u[..., :, :-1]) / h1
    divergence = (flux0[..., 1:, 1:-1] - flux0[..., :-1, 1:-1]) / h0 + (
        flux1[..., 1:-1, 1:] - flux1[..., 1:-1, :-1]
    ) / h1
    return -divergence


def darcy_operator(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The finite-volume ``-div(a grad u)`` at the interior nodes of the unit square.

    ``a`` and ``u`` are full node grids ``(..., H, W)`` (``u``'s boundary values are used as
    stored); returns ``(..., H-2, W-2)``. Differentiable in ``a`` and ``u``.
    """
    if a.shape[-2:] != u.shape[-2:] or min(a.shape[-2:]) < 3:
        raise PirfError(
            f"a and u must share one node grid of at least 3 x 3 nodes; got {tuple(a.shape)} "
            f"and {tuple(u.shape)}"
        )
    spacing = (node_spacing(a.shape[-2]), node_spacing(a.shape[-1]))
    return flux_divergence(harmonic_face_coefficients(a), u, spacing)


def darcy_default_rtol(dtype: torch.dtype, resolution: int) -> float:
    """Default solver tolerance: the dtype's (:func:`~pirf.pdes.pcg.default_rtol`) or
    ``eps * R``, whichever is larger.

    Rounding ``u`` to the dtype alone leaves a preconditioned residual of about
    ``0.15 eps R`` (white rounding noise weighs more in the energy norm as ``h`` shrinks);
    ``eps * R`` keeps a margin of about 7 above that floor. In float64 the dtype's 1e-11
    always dominates; in float32 ``eps * R`` exceeds 1e-6 from ``R = 9`` on.
    """
    return max(default_rtol(dtype), torch.finfo(dtype).eps * resolution)


def darcy_pcg(
    a: torch.Tensor,
    rhs: torch.Tensor,
    *,
    rtol: float | None = None,
    max_iterations: int | None = None,
) -> PCGResult:
    """Solve ``A(a) u = rhs`` with ``u = 0`` on the boundary, for a batch of samples.

    ``a`` is ``(B, R, R)`` on the full node grid (positive), ``rhs`` the interior values
    ``(B, R-2, R-2)``. Returns the :class:`~pirf.pdes.pcg.PCGResult` with the interior
    solution. ``rtol`` defaults to :func:`darcy_default_rtol`;
    ``max_iterations`` defaults to twice CG's iteration bound for the batch's coefficient
    contrast, plus 20.
    """
    resolution = a.shape[-1]
    if a.ndim != 3 or a.shape[-2] != resolution or resolution < 3:
        raise PirfError(f"the Darcy solver expects a square batch (B, R, R); got {tuple(a.shape)}")
    if rhs.shape != (a.shape[0], resolution - 2, resolution - 2):
        raise PirfError(
            f"right-hand side must be the interior (B, R-2, R-2) = "
            f"{(a.shape[0], resolution - 2, resolution - 2)}; got {tuple(rhs.shape)}"
        )
    minimum = a.amin(dim=(-2, -1))
    if not bool((minimum > 0).all()):
        raise PirfError("the Darcy coefficient a must be positive everywhere to solve for u")
    rtol = darcy_default_rtol(a.dtype, resolution) if rtol is None else rtol
    if max_iterations is None:
        contrast = float((a.amax(dim=(-2, -1)) / minimum).max())
        max_iterations = 2 * cg_iteration_bound(contrast, rtol) + 20

    faces = harmonic_face_coefficients(a)
    spacing = (node_spacing(resolution), node_spacing(resolution))
    poisson = DirichletSineSolver(resolution, dtype=a.dtype, device=a.device)
    # M = c (-Laplacian_h) with c the sample's mean coefficient. The scale c cancels in CG's
    # iterates; it only keeps M^-1 r in the units of u.
    inverse_scale = -1.0 / a.mean(dim=(-2, -1))[:, None, None]

    def operator(v: torch.Tensor) -> torch.Tensor:
        return flux_divergence(faces, with_zero_boundary(v), spacing)

    def preconditioner(r: torch.Tensor) -> torch.Tensor:
        return poisson.solve(r) * inverse_scale

    return pcg(operator, preconditioner, rhs, rtol=rtol, max_iterations=max_iterations)


def solve_darcy(
    a: torch.Tensor,
    rhs: torch.Tensor | float = 1.0,
    *,
    rtol: float | None = None,
    max_iterations: int | None = None,
) -> torch.Tensor:
    """Full-grid solution ``u`` ``(B, R, R)`` of ``A(a) u = rhs``, zero on the boundary.

    ``rhs`` is the interior forcing ``(B, R-2, R-2)`` or a constant. See :func:`darcy_pcg`.
    """
    if not torch.is_tensor(rhs):
        n = a.shape[-1] - 2
        rhs = torch.full((a.shape[0], n, n), float(rhs), dtype=a.dtype, device=a.device)
    result = darcy_pcg(a, rhs, rtol=rtol, max_iterations=max_iterations)
    return with_zero_boundary(result.solution)


def central_difference_form(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``-a lap(u) - grad a . grad u`` with central differences at the interior nodes.

    The non-conservative form used by the reference reward. For a binary ``a`` the centred
    ``grad a`` spreads each jump over two cells and ``a lap(u)`` samples ``a`` on one side of
    it, so this form is not consistent with the flux condition across the interface: its
    value there is O(1) or larger even for the exact discrete solution.
    """
    h0, h1 = node_spacing(a.shape[-2]), node_spacing(a.shape[-1])
    centre = u[..., 1:-1, 1:-1]
    laplacian = (u[..., 2:, 1:-1] - 2.0 * centre + u[..., :-2, 1:-1]) / h0**2 + (
        u[..., 1:-1, 2:] - 2.0 * centre + u[..., 1:-1, :-2]
    ) / h1**2
    grad_a0 = (a[..., 2:, 1:-1] - a[..., :-2, 1:-1]) / (2.0 * h0)
    grad_a1 = (a[..., 1:-1, 2:] - a[..., 1:-1, :-2]) / (2.0 * h1)
    grad_u0 = (u[..., 2:, 1:-1] - u[..., :-2, 1:-1]) / (2.0 * h0)
    grad_u1 = (u[..., 1:-1, 2:] - u[..., 1:-1, :-2]) / (2.0 * h1)
    return -a[..., 1:-1, 1:-1] * laplacian - (grad_a0 * grad_u0 + grad_a1 * grad_u1)


class Darcy(PDE):
    """Darcy flow with a binary permeability; see the module docstring.

    Parameters: ``a_low`` / ``a_high`` (the two permeability values; :meth:`snap` thresholds
    at their midpoint), ``grf_alpha`` / ``grf_tau`` (the GRF whose sign picks the value),
    ``forcing`` (the constant right-hand side), ``rtol`` (solver tolerance in the
    preconditioned norm; ``None``: :func:`darcy_default_rtol`) and ``max_iterations``
    (``None``: from the coefficient contrast).
    """

    name = "darcy"
    channels = ("a", "u")
    input_channels = ("a",)
    description = "-div(a grad u) = 1 on the unit square, u = 0 on the boundary, a in {3, 12}"
    default_params: ClassVar[dict[str, Any]] = {
        "a_low": 3.0,
        "a_high": 12.0,
        "grf_alpha": 2.0,
        "grf_tau": 3.0,
        "forcing": 1.0,
        "rtol": None,
        "max_iterations": None,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"resolution": 32},
        "small": {"resolution": 64},
        "paper": {"resolution": 128},
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        low, high = float(self._params["a_low"]), float(self._params["a_high"])
        if not 0.0 < low < high or not math.isfinite(high):
            raise PirfError(f"Darcy needs 0 < a_low < a_high; got a_low={low}, a_high={high}")

    @property
    def threshold(self) -> float:
        """Where :meth:`snap` splits ``a``: the midpoint of the two values (7.5 by default)."""
        return 0.5 * (float(self._params["a_low"]) + float(self._params["a_high"]))

    # ----------------------------------------------------------------------------- physics
    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        """``A(a) u - f`` at the interior nodes, ``(B, 1, H-2, W-2)``, with the solver's
        finite-volume operator. Uses ``u``'s boundary values as stored; needs ``a > 0``."""
        self.check_fields(fields)
        operator = darcy_operator(fields[:, 0], fields[:, 1])
        return (operator - float(self._params["forcing"])).unsqueeze(1)

    def reference_residual(self, fields: torch.Tensor) -> torch.Tensor:
        """The reference code's residual, ``(B, 1, R, R)`` at every pixel: the
        non-conservative ``-a lap(u) - grad a . grad u - f`` with ``h = 1 / R`` and one-sided
        stencils on the boundary (:func:`~pirf.pdes.reference.darcy_reference`).

        For comparison only: across the jumps of a binary ``a`` the centred ``grad a`` and
        ``a lap(u)`` are not consistent with the flux condition (see
        :func:`central_difference_form`), the spacing is not the nodes' ``1 / (R - 1)``, and
        the boundary rows see one-sided second derivatives, so exact solutions score far
        from zero.
        """
        self.check_fields(fields)
        residual = darcy_reference(fields[:, 0], fields[:, 1], float(self._params["forcing"]))
        return residual.unsqueeze(1)

    def reward_fields(self, fields: torch.Tensor) -> torch.Tensor:
        """``a`` clamped below at :data:`COEFFICIENT_FLOOR` times ``a_low``; ``u`` unchanged.

        The harmonic face means need ``a > 0``. The residual sees the raw generated ``a``
        wherever it is admissible, so gradients reach ``a`` there, and a generated value
        that strays near or below zero cannot divide by zero (those pixels get no gradient
        through ``a``). In normalised space the floor lies far outside the data, so a
        reasonable model never reaches it.
        """
        floor = COEFFICIENT_FLOOR * float(self._params["a_low"])
        return torch.cat([fields[:, :1].clamp_min(floor), fields[:, 1:]], dim=1)

    def precondition(self, residual: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """``(-abar Laplacian_h)^-1 R``: the solver's preconditioner, the Laplacian scaled
        by each sample's mean coefficient ``abar`` (of the fields' ``a``).
        ``(B, 1, R-2, R-2)``."""
        resolution = residual.shape[-1] + 2
        poisson = sine_solver(resolution, 0.0, residual.dtype, residual.device)
        mean = fields[:, 0].mean(dim=(-2, -1)).to(residual.dtype)
        return -poisson.solve(residual) / mean[:, None, None, None]

    def snap(self, fields: torch.Tensor) -> torch.Tensor:
        """Set ``a`` to ``a_high`` where it is at least the midpoint, else ``a_low``;
        ``u`` unchanged."""
        self.check_fields(fields)
        a = fields[:, 0]
        high = torch.full_like(a, float(self._params["a_high"]))
        low = torch.full_like(a, float(self._params["a_low"]))
        snapped = torch.where(a >= self.threshold, high, low)
        return torch.stack([snapped, fields[:, 1]], dim=1)

    # ----------------------------------------------------------------------------- data
    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        """Binary coefficients ``(B, 1, R, R)``, float64 on the CPU: ``a_high`` where the
        GRF is non-negative, ``a_low`` elsewhere."""
        self.check_resolution(resolution)
        field = cosine_grf(
            generators,
            resolution,
            float(self._params["grf_alpha"]),
            float(self._params["grf_tau"]),
        )
        high = torch.tensor(float(self._params["a_high"]), dtype=torch.float64)
        low = torch.tensor(float(self._params["a_low"]), dtype=torch.float64)
        return torch.where(field >= 0.0, high, low).unsqueeze(1)

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """Fields ``(B, 2, R, R)`` (``a``, ``u``) for coefficients ``(B, 1, R, R)`` or
        ``(B, R, R)``, in their dtype and on their device."""
        a = inputs[:, 0] if inputs.ndim == 4 else inputs
        if a.ndim != 3 or a.shape[-1] != a.shape[-2]:
            raise PirfError(f"Darcy inputs must be (B, 1, R, R); got {tuple(inputs.shape)}")
        self.check_resolution(a.shape[-1])
        u = solve_darcy(
            a,
            float(self._params["forcing"]),
            rtol=self._params["rtol"],
            max_iterations=self._params["max_iterations"],
        )
        return torch.stack([a, u], dim=1)

    def consistency(self, fields: torch.Tensor) -> torch.Tensor:
        """Relative L2 distance ``(B,)`` between ``u`` and the solution for the snapped ``a``."""
        snapped = self.snap(fields)
        solved = self.solve(snapped[:, :1])
        return relative_l2(fields[:, 1], solved[:, 1])


__all__ = [
    "COEFFICIENT_FLOOR",
    "Darcy",
    "central_difference_form",
    "darcy_default_rtol",
    "darcy_operator",
    "darcy_pcg",
    "flux_divergence",
    "harmonic_face_coefficients",
    "solve_darcy",
]
