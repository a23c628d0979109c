"""Kolmogorov flow: forced two-dimensional turbulence in vorticity form on (0, 2 pi)^2.

    w_t + v . grad w = (1/Re) laplacian(w) - drag w + f,     f = -A cos(k_f y),
    laplacian(psi) = -w,     v = (psi_y, -psi_x),

doubly periodic; the benchmark (PG-Diffusion's data) has ``Re = 1000``, ``drag = 0.1``,
``A = k_f = 4``. A sample is the vorticity at three consecutive times ``t, t + dt, t + 2 dt``
(channels ``w0, w1, w2``, ``dt = 1/32``) on the periodic grid ``x_i = 2 pi i / N``, with
``field[..., i, j] = w(x_i, y_j)``.

Residual (the reward): spectral derivatives on the middle frame and a central difference in
time over the three,

    r = (w2 - w0) / (2 dt) + P[v(w1) . grad w1] - (1/Re) laplacian(w1) + drag w1 - f,

``(B, 1, H, W)`` at every grid point, differentiable, at any resolution; ``P`` truncates the
product to the 2/3 band, exactly the solver's advection (:meth:`Kolmogorov.reference_residual`
omits it, as the reference code's reward does). Ground truth does not make it vanish: the central
difference has an ``O(dt^2)`` error ``dt^2 w_ttt / 6`` that no solver accuracy removes. That
floor is measured and reported (docs/kolmogorov.md); as the solver's internal step shrinks
the residual converges, at the solver's order, to the floor of the exact trajectory.

Data: a unit is one trajectory: a random initial vorticity
(:func:`~pirf.pdes.kolmogorov_initial.random_vorticity`) run through a spin-up that is
discarded, then ``samples_per_trajectory`` samples ``sample_spacing`` apart, simulated by
:class:`~pirf.pdes.kolmogorov_solver.VorticitySolver` (2/3-rule pseudo-spectral, IF-RK4 with
``substeps`` steps per frame) on the stored grid itself. Grids coarser than the reference
only resolve smaller Reynolds numbers, so the ``tiny`` and ``small`` presets use one.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE, relative_l2
from pirf.pdes.grid import Grid
from pirf.pdes.kolmogorov_initial import random_vorticity
from pirf.pdes.kolmogorov_solver import VorticitySolver
from pirf.pdes.kolmogorov_spectral import irfft2, rfft2, spectral_operators
from pirf.pdes.reference import kolmogorov_reference

PERIODIC_SQUARE = Grid(
    axes=("x", "y"),
    lower=(0.0, 0.0),
    upper=(2.0 * math.pi, 2.0 * math.pi),
    periodic=(True, True),
    endpoint=(False, False),
)
"""``(0, 2 pi)^2``, periodic, ``N`` points per axis without the repeated end point."""


def kolmogorov_forcing(
    shape: tuple[int, int],
    amplitude: float,
    wavenumber: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Vorticity forcing ``f = -amplitude cos(wavenumber y)`` on the grid, ``(H, W)``."""
    _, y = PERIODIC_SQUARE.mesh(shape, dtype=dtype, device=device)
    return -amplitude * torch.cos(wavenumber * y)


def residual_terms(
    fields: torch.Tensor,
    *,
    reynolds: float,
    drag: float,
    forcing_amplitude: float,
    forcing_wavenumber: int,
    frame_dt: float,
    dealias: bool = True,
) -> dict[str, torch.Tensor]:
    """The residual's terms for frames ``(B, 3, H, W)``, each ``(B, H, W)``.

    ``time`` ``(w2 - w0) / (2 dt)``, ``advection`` ``v(w1) . grad w1``, ``diffusion``
    ``-(1/Re) laplacian(w1)``, ``drag`` ``drag w1`` and ``forcing`` ``-f``; their sum is the
    residual. Space derivatives are spectral on the grid of the fields (rectangular grids
    allowed). With ``dealias`` the advection product is truncated to the 2/3 band
    ``|k_x| < H/3, |k_y| < W/3``, exactly as in the solver, so ground truth leaves only the
    time-difference error; without it the pointwise product keeps the modes beyond the band
    (and their aliases), the form of PG-Diffusion's reward. Differentiable.
    """
    w0, w1, w2 = fields[:, 0], fields[:, 1], fields[:, 2]
    shape = (fields.shape[-2], fields.shape[-1])
    operators = spectral_operators(shape, fields.device, fields.dtype)
    w1_hat = rfft2(w1)
    advection_hat = operators.advection_hat(w1_hat, dealias=dealias)
    laplacian_hat = -operators.squared_wavenumber * w1_hat
    spectra = torch.stack((advection_hat, laplacian_hat), dim=1)
    advection, laplacian = irfft2(spectra, shape).unbind(dim=1)
    forcing = kolmogorov_forcing(
        shape, forcing_amplitude, forcing_wavenumber, dtype=fields.dtype, device=fields.device
    )
    return {
        "time": (w2 - w0) / (2.0 * frame_dt),
        "advection": advection,
        "diffusion": -laplacian / reynolds,
        "drag": drag * w1,
        "forcing": -forcing.expand_as(w1),
    }


def vorticity_residual(
    fields: torch.Tensor,
    *,
    reynolds: float,
    drag: float,
    forcing_amplitude: float,
    forcing_wavenumber: int,
    frame_dt: float,
    dealias: bool = True,
) -> torch.Tensor:
    """Residual ``(B, 1, H, W)`` of frames ``(B, 3, H, W)``: the sum of :func:`residual_terms`."""
    terms = residual_terms(
        fields,
        reynolds=reynolds,
        drag=drag,
        forcing_amplitude=forcing_amplitude,
        forcing_wavenumber=forcing_wavenumber,
        frame_dt=frame_dt,
        dealias=dealias,
    )
    return sum(terms.values()).unsqueeze(1)


def _steps(duration: float, frame_dt: float, what: str) -> int:
    """``duration / frame_dt`` as an integer number of frames (raises if it is not one)."""
    frames = duration / frame_dt
    if abs(frames - round(frames)) > 1e-9 * max(1.0, frames) or frames < 0:
        raise PirfError(f"{what} must be a non-negative multiple of frame_dt; got {duration}")
    return round(frames)


class Kolmogorov(PDE):
    """Kolmogorov flow, three vorticity frames per sample; see the module docstring.

    Parameters: ``reynolds`` (``Re``; viscosity ``1/Re``), ``drag``, ``forcing_amplitude``
    and ``forcing_wavenumber`` (``f = -A cos(k_f y)``), ``frame_dt`` (time between the three
    frames); generation only: ``substeps`` (IF-RK4 steps per frame), ``spinup_time``
    (discarded), ``sample_spacing`` (time between the first frames of consecutive samples of
    one trajectory; a multiple of ``frame_dt``, at least ``2 frame_dt``),
    ``samples_per_trajectory``, ``initial_peak_wavenumber`` and ``initial_vorticity_rms``
    (the random initial field).
    """

    name = "kolmogorov"
    channels = ("w0", "w1", "w2")
    input_channels = ()
    description = (
        "w_t + v.grad w = lap(w)/Re - 0.1 w - 4 cos(4y) on (0,2pi)^2 periodic; "
        "3 vorticity frames dt = 1/32 apart"
    )
    default_params: ClassVar[dict[str, Any]] = {
        "reynolds": 1000.0,
        "drag": 0.1,
        "forcing_amplitude": 4.0,
        "forcing_wavenumber": 4,
        "frame_dt": 1.0 / 32.0,
        "substeps": 8,
        "spinup_time": 30.0,
        "sample_spacing": 0.5,
        "samples_per_trajectory": 64,
        "initial_peak_wavenumber": 4.0,
        "initial_vorticity_rms": 5.0,
    }
    # Choices and the measurements behind them: docs/kolmogorov.md. The defaults are the
    # reference ("paper") configuration; smaller grids resolve only smaller Reynolds numbers.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "resolution": 32,
            "params": {
                "reynolds": 40.0,
                "frame_dt": 0.125,
                "substeps": 2,
                "spinup_time": 30.0,
                "sample_spacing": 3.0,
                "samples_per_trajectory": 25,
                "initial_vorticity_rms": 3.0,
            },
        },
        "small": {
            "resolution": 64,
            "params": {
                "reynolds": 60.0,
                "frame_dt": 0.0625,
                "substeps": 4,
                "spinup_time": 30.0,
                "sample_spacing": 1.5,
                "samples_per_trajectory": 50,
                "initial_vorticity_rms": 3.5,
            },
        },
        "paper": {"resolution": 256, "params": {}},
    }
    min_resolution = 16
    grid = PERIODIC_SQUARE

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self._params
        for key in ("reynolds", "frame_dt", "initial_peak_wavenumber"):
            if not (float(p[key]) > 0.0 and math.isfinite(float(p[key]))):
                raise PirfError(f"Kolmogorov needs {key} > 0; got {p[key]}")
        if float(p["drag"]) < 0.0:
            raise PirfError(f"Kolmogorov needs drag >= 0; got {p['drag']}")
        for key in ("substeps", "samples_per_trajectory", "forcing_wavenumber"):
            if int(p[key]) != p[key] or int(p[key]) < 1:
                raise PirfError(f"{key} must be a positive integer; got {p[key]}")
        _steps(float(p["spinup_time"]), float(p["frame_dt"]), "spinup_time")
        if _steps(float(p["sample_spacing"]), float(p["frame_dt"]), "sample_spacing") < 2:
            raise PirfError("sample_spacing must be at least 2 frame_dt (a sample spans 3 frames)")

    # ----------------------------------------------------------------------------- physics
    def _physics(self) -> dict[str, Any]:
        p = self._params
        return {
            "reynolds": float(p["reynolds"]),
            "drag": float(p["drag"]),
            "forcing_amplitude": float(p["forcing_amplitude"]),
            "forcing_wavenumber": int(p["forcing_wavenumber"]),
            "frame_dt": float(p["frame_dt"]),
        }

    def position_harmonics(self) -> tuple[tuple[int, int], ...]:
        """The forcing ``cos(k_f y)``: ``y`` is axis 1 (dim -1), ``k_f`` cycles per field.

        Shifting a flow by half the forcing's period in ``y`` flips the forcing's sign; a
        shift-equivariant network cannot avoid generating such flows (docs/kolmogorov.md,
        "Base models and the forcing's phase")."""
        return ((1, int(self._params["forcing_wavenumber"])),)

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        """``(w2 - w0)/(2 dt) + P[v(w1).grad w1] - lap(w1)/Re + drag w1 - f``, ``(B, 1, H, W)``
        with the solver's de-aliased advection ``P[...]`` (:func:`vorticity_residual`)."""
        self.check_fields(fields)
        return vorticity_residual(fields, **self._physics())

    def precondition(self, residual: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """``R`` divided, per Fourier mode, by the linear part of the equation over the
        central difference's window: ``1 / (2 dt) + drag + |k|^2 / Re``. The vorticity
        error a residual ``R`` leaves after the window, with advection left out; it weighs
        large scales up against the grid scales that dominate the plain residual.
        ``(B, 1, H, W)``."""
        shape = (residual.shape[-2], residual.shape[-1])
        physics = self._physics()
        operators = spectral_operators(shape, residual.device, residual.dtype)
        symbol = (
            0.5 / physics["frame_dt"]
            + physics["drag"]
            + operators.squared_wavenumber / physics["reynolds"]
        )
        return irfft2(rfft2(residual) / symbol, shape)

    def reference_residual(self, fields: torch.Tensor) -> torch.Tensor:
        """The reference code's residual, ``(B, 1, H, W)``: the advection product not
        de-aliased, Nyquist modes kept (:func:`~pirf.pdes.reference.kolmogorov_reference`).

        For comparison only: on ground truth it also contains the product's modes beyond
        the 2/3 band, which the solver discards by design.
        """
        self.check_fields(fields)
        return kolmogorov_reference(fields, **self._physics())

    def residual_terms(
        self, fields: torch.Tensor, *, dealias: bool = True
    ) -> dict[str, torch.Tensor]:
        """The residual's terms, each ``(B, H, W)`` (:func:`residual_terms`)."""
        self.check_fields(fields)
        return residual_terms(fields, **self._physics(), dealias=dealias)

    # ----------------------------------------------------------------------------- solver
    def solver(
        self,
        resolution: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        substeps: int | None = None,
    ) -> VorticitySolver:
        """The IF-RK4 solver on ``resolution^2`` with this PDE's physics; its step is
        ``frame_dt / substeps`` (``substeps`` defaults to the parameter)."""
        self.check_resolution(resolution)
        p = self._params
        substeps = int(p["substeps"]) if substeps is None else int(substeps)
        wavenumber = int(p["forcing_wavenumber"])
        if 3 * wavenumber >= resolution:
            raise PirfError(
                f"the forcing wavenumber {wavenumber} lies outside the 2/3 band of a "
                f"{resolution}^2 grid; use a resolution above {3 * wavenumber}"
            )
        forcing = kolmogorov_forcing(
            (resolution, resolution), float(p["forcing_amplitude"]), wavenumber
        )
        return VorticitySolver(
            resolution,
            viscosity=1.0 / float(p["reynolds"]),
            drag=float(p["drag"]),
            forcing=forcing,
            step=float(p["frame_dt"]) / substeps,
            device=device,
            dtype=dtype,
        )

    # ----------------------------------------------------------------------------- data
    def samples_per_unit(self, resolution: int) -> int:
        """Samples per trajectory (the ``samples_per_trajectory`` parameter)."""
        return int(self._params["samples_per_trajectory"])

    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        """Random initial vorticity ``(B, R, R)``, float64 on the CPU, one per trajectory."""
        self.check_resolution(resolution)
        return random_vorticity(
            generators,
            resolution,
            peak_wavenumber=float(self._params["initial_peak_wavenumber"]),
            rms=float(self._params["initial_vorticity_rms"]),
        )

    def simulate(self, initial: torch.Tensor, *, substeps: int | None = None) -> torch.Tensor:
        """Samples ``(B, S, 3, R, R)`` of the trajectories from initial vorticity ``(B, R, R)``
        (on its device, in its dtype): spin-up, then ``S = samples_per_trajectory`` samples."""
        p = self._params
        substeps = int(p["substeps"]) if substeps is None else int(substeps)
        if initial.ndim != 3 or initial.shape[-1] != initial.shape[-2]:
            raise PirfError(f"initial vorticity must be (B, R, R); got {tuple(initial.shape)}")
        solver = self.solver(
            initial.shape[-1], device=initial.device, dtype=initial.dtype, substeps=substeps
        )
        frame_dt = float(p["frame_dt"])
        return solver.frames(
            solver.project(initial),
            first=substeps * _steps(float(p["spinup_time"]), frame_dt, "spinup_time"),
            spacing=substeps * _steps(float(p["sample_spacing"]), frame_dt, "sample_spacing"),
            count=int(p["samples_per_trajectory"]),
            substeps=substeps,
        )

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """Samples ``(B * S, 3, R, R)`` (trajectory-major) from initial vorticity ``(B, R, R)``."""
        frames = self.simulate(inputs)
        return frames.reshape(-1, *frames.shape[2:])

    def generate(
        self,
        generators: list[torch.Generator],
        resolution: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """``(len(generators) * samples_per_trajectory, 3, R, R)``: one trajectory per
        generator, its samples consecutive (unit-major)."""
        self.check_resolution(resolution)
        initial = self.sample_inputs(generators, resolution)
        return self.solve(initial.to(device=device, dtype=dtype))

    def input_mask(self, height: int, width: int) -> torch.Tensor:
        """The first frame ``w0``, which the later frames evolve from."""
        mask = torch.zeros((3, height, width), dtype=torch.bool)
        mask[0] = True
        return mask

    def consistency(self, fields: torch.Tensor) -> torch.Tensor:
        """Relative L2 distance ``(B,)`` between frames ``(w1, w2)`` and the solver's advance
        of ``w0`` by ``dt`` and ``2 dt`` (on the fields' grid, device and dtype)."""
        self.check_fields(fields)
        if fields.shape[-1] != fields.shape[-2]:
            raise PirfError(f"consistency needs square fields; got {tuple(fields.shape)}")
        solver = self.solver(fields.shape[-1], device=fields.device, dtype=fields.dtype)
        substeps = int(self._params["substeps"])
        first = solver.advance(solver.project(fields[:, 0]), substeps)
        second = solver.advance(first, substeps)
        advanced = torch.stack((solver.to_grid(first), solver.to_grid(second)), dim=1)
        return relative_l2(advanced, fields[:, 1:])


__all__ = [
    "PERIODIC_SQUARE",
    "Kolmogorov",
    "kolmogorov_forcing",
    "residual_terms",
    "vorticity_residual",
]
