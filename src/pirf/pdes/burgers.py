"""Viscous Burgers: ``u_t + u u_x = nu u_xx``, ``x`` in ``[0, 1)`` periodic, ``t`` in ``[0, 1]``.

A sample is one channel ``u`` on the ``(t, x)`` grid, ``(1, R, R)``: dim -2 is time
``t_n = n / R`` (``n = 0 .. R-1``), dim -1 is space ``x_j = j / R``, so ``dt = dx = 1 / R``
(the reference 128 x 128 data at ``R = 128``). The initial condition is the FNO Burgers
random field: a periodic GRF with amplitudes ``sigma (4 pi^2 k^2 + tau^2)^(-gamma/2)``
(``gamma = 2.5, tau = 7, sigma = 49``), truncated to ``modes`` Fourier modes.

Solver (:func:`simulate_burgers`): Fourier pseudo-spectral in ``x`` with 2/3 de-aliasing on
an internal grid of ``M = grid_factor * R`` points (the stored nodes are every
``grid_factor``-th internal node), and ETDRK4 in time (Cox & Matthews' exponential
time differencing, fourth order, with Kassam & Trefethen's contour-integral coefficients):
the stiff diffusion ``-nu k^2`` is integrated exactly, the advection ``-(u^2/2)_x``
explicitly with ``substeps`` internal steps per stored step. The mean of ``u`` (mode 0) is
exactly invariant under this scheme, as under the PDE. (The plain mean over the ``R`` stored
nodes also picks up the internal modes ``k = R, 2R, ...`` below the de-aliasing cut-off
``M / 3``; they are spectrally small, and absent when ``R >= M / 3``.)

Random input (:meth:`Burgers.sample_inputs`): the initial condition sampled at the ``R``
stored nodes, ``(B, R)``. With ``modes < R / 2`` these samples determine the band-limited
initial condition exactly, so the same seed gives the same trajectory at every such ``R``,
and re-simulating from a sample's first time row (:meth:`Burgers.consistency`) reproduces
ground truth to solver precision. The solver interpolates the row spectrally onto the
internal grid.

Residual (:func:`burgers_residual`, the reference's): central differences on the stored grid,

    (u[n+1, j] - u[n-1, j]) / (2 dt) + u[n, j] (u[n, j+1] - u[n, j-1]) / (2 dx)
        - nu (u[n, j+1] - 2 u[n, j] + u[n, j-1]) / dx^2,

periodic in ``x``, at the time levels ``n = 1 .. R-2``: shape ``(B, 1, R-2, R)``. The solver
is far more accurate than this stencil, so ground truth does not satisfy it exactly: its
residual is the stencil's truncation error on the true trajectory, a floor that is reported
beside every result. Measured on 512 test trajectories, its mean square is 2.2e-3, 2.0e-4
and 1.4e-5 at ``R = 32, 64, 128`` (approaching the stencil's ``dx^2`` rate; a few steep
fronts dominate: the per-sample median is about ten times lower).
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, NamedTuple

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE, relative_l2
from pirf.pdes.grf import periodic_grf_1d
from pirf.pdes.grid import Grid
from pirf.pdes.reference import burgers_reference
from pirf.pdes.spectral import (
    fourier_upsample,
    rfft_wavenumbers,
    two_thirds_mask,
)

BURGERS_GRID = Grid(
    axes=("t", "x"),
    lower=(0.0, 0.0),
    upper=(1.0, 1.0),
    periodic=(False, True),
    endpoint=(False, False),
)
"""``t_n = n / R`` (the last stored level is ``1 - 1/R``) by ``x_j = j / R`` periodic."""

AUTO_INTERNAL_POINTS = 256
"""The internal grid size ``grid_factor=None`` reaches at least (:meth:`Burgers.grid_factor_for`).

At ``nu = 0.01`` the benchmark's fronts are a few hundredths wide. Against a 1024-point
reference, 256 benchmark trajectories on 256 points differ by at most 2e-10 (192 points:
4e-8; 128 points: 8e-6), so the stored fields are spectrally converged."""


class ETDRK4Coefficients(NamedTuple):
    """Diagonal ETDRK4 coefficients for ``v' = L v + N(v)`` and step ``h`` (Cox & Matthews).

    ``exp_full = e^{hL}``, ``exp_half = e^{hL/2}``, ``half`` = ``h phi_1(hL/2) / 2``, and
    ``f1, f2, f3`` the weights of ``N(v), N(a) + N(b), N(c)`` in the final stage.
    """

    exp_full: torch.Tensor
    exp_half: torch.Tensor
    half: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor
    f3: torch.Tensor

    def to(self, *, dtype: torch.dtype, device: torch.device | str) -> ETDRK4Coefficients:
        return ETDRK4Coefficients(*(c.to(dtype=dtype, device=device) for c in self))


def etdrk4_coefficients(
    linear: torch.Tensor, step: float, contour_points: int = 64
) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for a real, diagonal linear operator ``linear`` and time ``step``.

    The phi-functions ``(e^z - 1 - ...) / z^m`` cancel catastrophically for small ``|z|``;
    following Kassam & Trefethen (2005) each is evaluated as the mean of its values on a
    circle of radius 1 around ``z = h L`` (Cauchy's formula; the trapezoidal rule on the
    circle converges geometrically, to rounding with 64 points). Computed in complex128 on
    the CPU; returns float64 tensors shaped like ``linear``.
    """
    z = step * linear.detach().to(device="cpu", dtype=torch.float64)
    angles = math.pi * (torch.arange(contour_points, dtype=torch.float64) + 0.5) / contour_points
    roots = torch.exp(1j * angles)
    lr = z.to(torch.complex128)[..., None] + roots
    exp_lr = torch.exp(lr)
    half = step * ((torch.exp(lr / 2) - 1.0) / lr).mean(dim=-1).real
    f1 = step * ((-4.0 - lr + exp_lr * (4.0 - 3.0 * lr + lr**2)) / lr**3).mean(dim=-1).real
    f2 = step * ((2.0 + lr + exp_lr * (-2.0 + lr)) / lr**3).mean(dim=-1).real
    f3 = step * ((-4.0 - 3.0 * lr - lr**2 + exp_lr * (4.0 - lr)) / lr**3).mean(dim=-1).real
    return ETDRK4Coefficients(torch.exp(z), torch.exp(z / 2), half, f1, f2, f3)


def round_up_to_smooth(counts: torch.Tensor) -> torch.Tensor:
    """Round positive integers up to the nearest ``2^a`` or ``3 * 2^a`` (1, 2, 3, 4, 6, 8, 12...).

    At most two distinct values per octave, so samples grouped by step count form few
    batches, at a cost of at most 50% more steps for a sample.
    """
    counts = counts.clamp_min(1).to(torch.float64)
    power = torch.exp2(torch.ceil(torch.log2(counts)))
    three = 3.0 * torch.exp2(torch.ceil(torch.log2(counts / 3.0)))
    smooth = torch.where(three >= counts, torch.minimum(power, three), power)
    return smooth.round().to(torch.int64)


def burgers_substeps(
    u0: torch.Tensor, output_step: float, viscosity: float, cfl: float, max_step: float
) -> torch.Tensor:
    """Per-sample ETDRK4 steps per stored step, ``(B,)`` int64, from ``u0`` ``(B, ...)``.

    The step ``h`` is the largest with ``h <= max_step`` and ``h max|u0|^2 / nu <= cfl``,
    rounded to a :func:`round_up_to_smooth` count. ``h |u|^2 / nu`` is the viscous-advective
    Courant number (fronts are ``~ nu / |u|`` wide); viscous Burgers obeys a maximum
    principle, so ``max|u|`` never exceeds its initial value. The bound also makes ETDRK4
    stable: modes with ``|k| < |u| / nu`` see an advective Courant number
    ``h |u| |k| < cfl`` and faster ones are dominated by the exactly integrated diffusion.
    ``max_step`` resolves the decay of the initial condition's modes, which limits the
    accuracy at small amplitudes. The count depends on the sample alone.
    """
    speed = u0.detach().abs().flatten(1).amax(dim=-1).to(device="cpu", dtype=torch.float64)
    step = torch.clamp(cfl * viscosity / speed.clamp_min(1e-300) ** 2, max=max_step)
    # The factor keeps exact ratios (e.g. output_step / max_step = 6) from rounding up.
    return round_up_to_smooth(torch.ceil(output_step / step * (1.0 - 1e-12)))


def simulate_burgers(
    u0: torch.Tensor,
    *,
    viscosity: float,
    output_step: float,
    outputs: int,
    substeps: int,
    stride: int = 1,
) -> torch.Tensor:
    """Integrate viscous Burgers from ``u0`` ``(B, M)`` on ``M`` periodic points of ``[0, 1)``.

    Returns ``(B, outputs, M / stride)``: the state at ``t = n * output_step`` for ``n = 0 ..
    outputs-1`` (the first is the de-aliased ``u0``) at every ``stride``-th point, in
    ``u0``'s dtype and device. Each output step is ``substeps`` ETDRK4 steps of size
    ``output_step / substeps``. Modes with ``3 k >= M`` are removed from ``u0`` and from
    every nonlinear product (2/3 rule).
    """
    n = u0.shape[-1]
    if u0.ndim != 2 or stride < 1 or n % stride:
        raise PirfError(
            f"simulate_burgers expects u0 (B, M) with M a multiple of stride={stride}; "
            f"got {tuple(u0.shape)}"
        )
    if substeps < 1 or outputs < 1:
        raise PirfError(f"substeps and outputs must be positive; got {substeps}, {outputs}")
    real = u0.dtype
    k = rfft_wavenumbers(n, dtype=torch.float64, device="cpu")
    coefficients = etdrk4_coefficients(-viscosity * k**2, output_step / substeps).to(
        dtype=real, device=u0.device
    )
    mask = two_thirds_mask(n, device=u0.device)
    # N(v) = -FFT((u^2 / 2)_x), de-aliased: -(i k / 2) FFT(u^2) on the kept modes.
    advection = torch.where(mask, -0.5j * k.to(device=u0.device), 0.0).to(
        torch.complex64 if real == torch.float32 else torch.complex128
    )

    def nonlinear(v: torch.Tensor) -> torch.Tensor:
        u = torch.fft.irfft(v, n=n)
        return advection * torch.fft.rfft(u * u)

    e, e2, q, f1, f2, f3 = coefficients
    v = torch.fft.rfft(u0) * mask
    states = [torch.fft.irfft(v, n=n)[:, ::stride]]
    for _ in range(outputs - 1):
        for _ in range(substeps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2.0 * nb - nv)
            nc = nonlinear(c)
            v = e * v + f1 * nv + 2.0 * f2 * (na + nb) + f3 * nc
        states.append(torch.fft.irfft(v, n=n)[:, ::stride])
    return torch.stack(states, dim=1)


def burgers_residual(u: torch.Tensor, viscosity: float, dt: float, dx: float) -> torch.Tensor:
    """Central-difference Burgers residual of ``u`` ``(..., T, X)`` at time levels ``1..T-2``.

    ``(u[n+1] - u[n-1]) / (2 dt) + u (u[j+1] - u[j-1]) / (2 dx) - nu (u[j+1] - 2 u + u[j-1])
    / dx^2``, periodic in ``x`` (dim -1). Returns ``(..., T-2, X)``; differentiable.
    """
    centre = u[..., 1:-1, :]
    right = torch.roll(centre, shifts=-1, dims=-1)
    left = torch.roll(centre, shifts=1, dims=-1)
    time_derivative = (u[..., 2:, :] - u[..., :-2, :]) / (2.0 * dt)
    advection = centre * (right - left) / (2.0 * dx)
    diffusion = (right - 2.0 * centre + left) / dx**2
    return time_derivative + advection - viscosity * diffusion


@functools.lru_cache(maxsize=16)
def heat_propagator(
    levels: int, width: int, viscosity: float, dt: float, device: torch.device
) -> torch.Tensor:
    """``dt exp(-nu k^2 (j - i) dt)`` for ``i <= j`` (0 above the diagonal), per ``rfft``
    mode ``k = 2 pi m`` of a periodic unit interval of ``width`` points: ``(K, T, T)`` in
    float64. Built outside inference mode so that autograd can use the cached table."""
    with torch.inference_mode(False):
        k = 2.0 * math.pi * torch.arange(width // 2 + 1, dtype=torch.float64, device=device)
        steps = torch.arange(levels, dtype=torch.float64, device=device)
        lag = steps[:, None] - steps[None, :]
        rate = viscosity * k**2
        table = dt * torch.exp(-rate[:, None, None] * dt * lag.clamp_min(0.0)[None])
        return table * (lag >= 0)[None]


class Burgers(PDE):
    """Viscous Burgers on the ``(t, x)`` grid; see the module docstring.

    Parameters: ``viscosity`` (``nu``); ``gamma``, ``tau``, ``sigma`` (the initial GRF's
    spectrum) and ``modes`` (its number of Fourier modes, fixed so that every grid sees the
    same initial condition); ``grid_factor`` (internal grid ``M = grid_factor * R``;
    ``None``: the smallest factor >= 2 with ``M >= 256``); ``substeps`` (ETDRK4 steps per
    stored step; ``None``: per sample, from ``h max|u0|^2 / nu <= cfl`` and
    ``h <= max_step``, see :func:`burgers_substeps`). The defaults keep the solver's error
    near 1e-7 (absolute, whole field) at every preset.
    """

    name = "burgers"
    channels = ("u",)
    input_channels = ()
    description = "u_t + u u_x = 0.01 u_xx, x in [0,1) periodic, t in [0,1]; u on the (t, x) grid"
    default_params: ClassVar[dict[str, Any]] = {
        "viscosity": 0.01,
        "gamma": 2.5,
        "tau": 7.0,
        "sigma": 49.0,
        "modes": 15,
        "grid_factor": None,
        "substeps": None,
        "cfl": 0.15,
        "max_step": 1 / 192,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"resolution": 32},
        "small": {"resolution": 64},
        "paper": {"resolution": 128},
    }
    min_resolution = 8
    grid = BURGERS_GRID

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self._params
        if not float(p["viscosity"]) > 0.0:
            raise PirfError(f"Burgers needs viscosity > 0; got {p['viscosity']}")
        if int(p["modes"]) < 1:
            raise PirfError(f"Burgers needs modes >= 1; got {p['modes']}")
        if p["grid_factor"] is not None and int(p["grid_factor"]) < 1:
            raise PirfError(f"grid_factor must be a positive integer; got {p['grid_factor']}")
        if p["substeps"] is not None and int(p["substeps"]) < 1:
            raise PirfError(f"substeps must be a positive integer; got {p['substeps']}")
        if not (float(p["cfl"]) > 0.0 and float(p["max_step"]) > 0.0):
            raise PirfError(f"cfl and max_step must be positive; got {p['cfl']}, {p['max_step']}")

    @property
    def viscosity(self) -> float:
        return float(self._params["viscosity"])

    def grid_factor_for(self, resolution: int) -> int:
        """Internal points per stored point: the parameter, or the smallest factor >= 2 with
        ``factor * resolution >= 256`` (:data:`AUTO_INTERNAL_POINTS`)."""
        if self._params["grid_factor"] is not None:
            return int(self._params["grid_factor"])
        return max(2, math.ceil(AUTO_INTERNAL_POINTS / resolution))

    # ----------------------------------------------------------------------------- physics
    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        """Central-difference residual ``(B, 1, T-2, X)`` of fields ``(B, 1, T, X)`` in
        physical units, with ``dt = 1 / T`` and ``dx = 1 / X`` (:func:`burgers_residual`)."""
        self.check_fields(fields)
        dt, dx = self.grid.spacing(tuple(fields.shape[-2:]))
        return burgers_residual(fields, self.viscosity, dt, dx)

    def reference_residual(self, fields: torch.Tensor) -> torch.Tensor:
        """The reference code's residual, ``(B, 1, T, X)`` at every point: central
        differences after replicate padding, ``x`` not periodic, ``u_xx`` as the derivative
        of ``u_x`` (:func:`~pirf.pdes.reference.burgers_reference`). For comparison only:
        its padded first and last rows and columns are not consistent with the equation."""
        self.check_fields(fields)
        return burgers_reference(fields, self.viscosity)

    def precondition(self, residual: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """The residual propagated by the heat operator ``d/dt - nu d^2/dx^2``'s inverse,
        ``(B, 1, T-2, X)``: the error a field picks up when the residual acts as a source
        from the first residual level on, with the advection left out (the equation's
        constant-coefficient part). Per Fourier mode ``k`` of ``x``,
        ``E_j = sum_{i <= j} dt exp(-nu k^2 (j - i) dt) R_i``, so high wavenumbers decay
        within a few steps and low ones accumulate: the norm of ``E`` weighs scales as the
        consistency metric's re-simulation does, not as the stencil does."""
        levels, width = residual.shape[-2], residual.shape[-1]
        dt, _ = self.grid.spacing(tuple(fields.shape[-2:]))
        decay = heat_propagator(levels, width, self.viscosity, dt, residual.device)
        spectrum = torch.fft.rfft(residual, dim=-1)
        propagated = torch.einsum("kji,...ik->...jk", decay.to(spectrum.dtype), spectrum)
        return torch.fft.irfft(propagated, n=width, dim=-1).to(residual.dtype)

    # ----------------------------------------------------------------------------- data
    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        """Initial conditions at the stored nodes ``x_j = j / R``: ``(B, R)`` float64, CPU.

        The GRF has ``modes`` Fourier modes whatever ``R``; for ``R > 2 modes`` the samples
        determine it exactly (for smaller ``R`` the row is its aliased sampling).
        """
        self.check_resolution(resolution)
        points = torch.arange(resolution, dtype=torch.float64) / resolution
        return periodic_grf_1d(
            generators,
            points,
            float(self._params["gamma"]),
            float(self._params["tau"]),
            float(self._params["sigma"]),
            modes=int(self._params["modes"]),
        )

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """Fields ``(B, 1, R, R)`` from initial rows ``(B, R)`` (or ``(B, 1, R)``), in their
        dtype and on their device (see :meth:`trajectories`)."""
        rows = inputs[:, 0] if inputs.ndim == 3 else inputs
        if rows.ndim != 2:
            raise PirfError(
                f"Burgers inputs must be initial rows (B, R); got {tuple(inputs.shape)}"
            )
        return self.trajectories(rows, rows.shape[-1])

    def trajectories(self, rows: torch.Tensor, time_levels: int) -> torch.Tensor:
        """Fields ``(B, 1, T, X)`` at ``t_n = n / T`` (``n < T = time_levels``) from initial
        rows ``(B, X)`` at ``x_j = j / X``.

        Each row is interpolated spectrally onto the internal grid of
        ``grid_factor_for(X) * X`` points, integrated to ``t = (T-1) / T`` and sampled at the
        stored nodes. With automatic ``substeps`` the samples are integrated in groups of
        equal step count, so a sample's result never depends on its batch neighbours.
        """
        resolution = rows.shape[-1]
        self.check_resolution(min(resolution, time_levels))
        factor = self.grid_factor_for(resolution)
        u0 = fourier_upsample(rows, factor * resolution)
        output_step = 1.0 / time_levels
        if self._params["substeps"] is not None:
            counts = torch.full((rows.shape[0],), int(self._params["substeps"]))
        else:
            counts = burgers_substeps(
                u0,
                output_step,
                self.viscosity,
                float(self._params["cfl"]),
                float(self._params["max_step"]),
            )
        fields = rows.new_empty((rows.shape[0], 1, time_levels, resolution))
        for count in torch.unique(counts).tolist():
            members = torch.nonzero(counts == count).flatten().to(rows.device)
            trajectory = simulate_burgers(
                u0[members],
                viscosity=self.viscosity,
                output_step=output_step,
                outputs=time_levels,
                substeps=int(count),
                stride=factor,
            )
            fields[members, 0] = trajectory
        return fields

    def input_mask(self, height: int, width: int) -> torch.Tensor:
        """The initial condition: the first time row, ``u(t = 0, x)``."""
        mask = torch.zeros((1, height, width), dtype=torch.bool)
        mask[0, 0] = True
        return mask

    def consistency(self, fields: torch.Tensor) -> torch.Tensor:
        """Relative L2 distance ``(B,)`` over the whole ``(t, x)`` field between ``fields`` and
        the trajectory re-simulated from their first time row ``u[:, 0, 0, :]``."""
        self.check_fields(fields)
        replay = self.trajectories(fields[:, 0, 0, :].detach(), fields.shape[-2])
        return relative_l2(fields.detach(), replay)


__all__ = [
    "AUTO_INTERNAL_POINTS",
    "BURGERS_GRID",
    "Burgers",
    "ETDRK4Coefficients",
    "burgers_residual",
    "burgers_substeps",
    "etdrk4_coefficients",
    "round_up_to_smooth",
    "simulate_burgers",
]
