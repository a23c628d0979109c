"""Pseudo-spectral solver of two-dimensional forced vorticity dynamics on (0, 2 pi)^2.

    w_t + v . grad w = nu laplacian(w) - drag w + f,      laplacian(psi) = -w,
    v = (psi_y, -psi_x),

doubly periodic (see :mod:`pirf.pdes.kolmogorov_spectral` for conventions).

Space: Fourier-Galerkin with the 2/3 rule. The state is the half-spectrum ``rfft2(w)``
restricted to ``|k_x|, |k_y| < N / 3``; the advection term is evaluated on the grid and its
spectrum truncated to the same band, which removes every aliased product exactly.

Time: the linear part ``L = -nu |k|^2 - drag`` is diagonal, so it is integrated exactly by
an integrating factor and the advection by the classical fourth-order Runge-Kutta method
(Lawson's integrating-factor RK4, "IF-RK4", global order 4). The steady forcing is absorbed
into the linear part: the state is advanced as the deviation ``w - w_L`` from the linear
steady state ``w_L = -f / L`` (the laminar flow, on which advection vanishes), so the
laminar flow is a fixed point to round-off and modes on which advection vanishes relax
exactly. The step is fixed: a sample's trajectory must not depend on which other samples
share its batch.
"""

from __future__ import annotations

import math

import torch

from pirf.errors import PirfError
from pirf.pdes.kolmogorov_spectral import irfft2, rfft2, spectral_operators


class VorticitySolver:
    """Batched IF-RK4 / 2/3-rule pseudo-spectral solver on an ``N x N`` grid.

    Parameters: ``resolution`` ``N``; ``viscosity`` ``nu = 1/Re``; ``drag`` (linear damping);
    ``forcing`` the vorticity forcing on the grid ``(N, N)`` (truncated to the band);
    ``step`` the fixed time step; ``device``/``dtype`` (float32 or float64) where the state
    lives. The state is the half-spectrum ``(B, N, N//2+1)`` (complex).
    """

    def __init__(
        self,
        resolution: int,
        *,
        viscosity: float,
        drag: float,
        forcing: torch.Tensor,
        step: float,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise PirfError(f"the vorticity solver runs in float32 or float64, not {dtype}")
        if not (step > 0.0 and math.isfinite(step)):
            raise PirfError(f"the time step must be positive and finite; got {step}")
        self.resolution = resolution
        self.shape = (resolution, resolution)
        self.step = float(step)
        self.device = torch.device(device)
        self.dtype = dtype
        self.operators = spectral_operators(self.shape, self.device, dtype)
        linear = -float(viscosity) * self.operators.squared_wavenumber - float(drag)
        self._decay_half = torch.exp(0.5 * self.step * linear)
        self._decay_full = torch.exp(self.step * linear)
        self.forcing_hat = self.project(forcing.to(device=self.device, dtype=dtype))
        # w_L = -f / L where L != 0 (L = 0 only at k = 0 without drag, where f must vanish).
        scale = float(self.forcing_hat.abs().max()) if self.forcing_hat.numel() else 0.0
        if bool((self.forcing_hat[linear == 0].abs() > 1e-10 * scale).any()):
            raise PirfError("a forcing with a mean needs drag > 0 (no steady state otherwise)")
        self.steady_hat = torch.where(
            linear != 0, -self.forcing_hat / linear.where(linear != 0, 1.0), 0.0
        )
        """The linear steady state ``w_L = -f / L`` (half-spectrum), the laminar flow."""

    # ----------------------------------------------------------------------------- transforms
    def project(self, w: torch.Tensor) -> torch.Tensor:
        """Half-spectrum of grid field(s) ``w`` ``(..., N, N)``, truncated to the 2/3 band."""
        return rfft2(w) * self.operators.mask

    def to_grid(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Grid values ``(..., N, N)`` of half-spectra ``w_hat``."""
        return irfft2(w_hat, self.shape)

    # ----------------------------------------------------------------------------- dynamics
    def advance_one(self, w_hat: torch.Tensor) -> torch.Tensor:
        """One IF-RK4 step of size :attr:`step`, on the deviation from :attr:`steady_hat`.

        With ``d = w - w_L``: ``d_t = L d + N(d)``, ``N(d) = -P[v . grad w](w_L + d)``.
        """
        h, e_half, e_full, steady = self.step, self._decay_half, self._decay_full, self.steady_hat

        def nonlinear(deviation: torch.Tensor) -> torch.Tensor:
            return -self.operators.advection_hat(deviation + steady)

        d = w_hat - steady
        k1 = nonlinear(d)
        half = e_half * d
        k2 = nonlinear(half + (0.5 * h) * (e_half * k1))
        k3 = nonlinear(half + (0.5 * h) * k2)
        k4 = nonlinear(e_full * d + h * (e_half * k3))
        d = e_full * (d + (h / 6.0) * k1) + (h / 6.0) * (2.0 * e_half * (k2 + k3) + k4)
        return steady + d

    def advance(self, w_hat: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` IF-RK4 steps; raises :class:`PirfError` if the state stops being finite."""
        for _ in range(steps):
            w_hat = self.advance_one(w_hat)
        if steps and not bool(torch.isfinite(torch.view_as_real(w_hat)).all()):
            raise PirfError(
                f"the vorticity solver diverged (time step {self.step:g} on a "
                f"{self.resolution}^2 grid); increase 'substeps'"
            )
        return w_hat

    def frames(
        self, w_hat: torch.Tensor, *, first: int, spacing: int, count: int, substeps: int
    ) -> torch.Tensor:
        """Samples of three consecutive frames along the trajectories starting at ``w_hat``.

        Advances ``first`` steps, then records frames ``substeps`` steps apart, three per
        sample, with ``spacing`` steps between the first frames of consecutive samples
        (``spacing >= 2 substeps``). Returns grid values ``(B, count, 3, N, N)``.
        """
        if spacing < 2 * substeps or substeps < 1 or count < 1 or first < 0:
            raise PirfError(
                f"samples need spacing >= 2 substeps >= 2 and count >= 1; got first={first}, "
                f"spacing={spacing}, count={count}, substeps={substeps}"
            )
        out = torch.empty(
            (w_hat.shape[0], count, 3, *self.shape), dtype=self.dtype, device=self.device
        )
        w_hat = self.advance(w_hat, first)
        for sample in range(count):
            for frame in range(3):
                if frame:
                    w_hat = self.advance(w_hat, substeps)
                out[:, sample, frame] = self.to_grid(w_hat)
            if sample + 1 < count:
                w_hat = self.advance(w_hat, spacing - 2 * substeps)
        return out


__all__ = ["VorticitySolver"]
