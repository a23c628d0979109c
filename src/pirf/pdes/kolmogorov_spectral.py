"""Fourier operators of two-dimensional vorticity dynamics on the periodic square (0, 2 pi)^2.

Fields are ``(..., H, W)`` arrays with ``field[..., i, j] = w(x_i, y_j)``, ``x_i = 2 pi i / H``
and ``y_j = 2 pi j / W``: axis ``x`` is dim -2, axis ``y`` dim -1 (the package's grid
convention). The period is 2 pi, so wavenumbers are integers. Spectra are the half-spectra
of ``torch.fft.rfft2`` (``(..., H, W//2+1)``).

Velocity comes from the stream function: ``laplacian(psi) = -w`` and ``v = (psi_y, -psi_x)``,
so ``v_hat = (i k_y, -i k_x) w_hat / |k|^2`` (the mean of ``psi`` is irrelevant and set to 0).
These operators are shared by the solver and the residual, so the residual's discrete
advection is exactly the solver's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def _transform_as_batch(
    transform: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Apply a 2-D ``transform`` (over dims -2, -1) so that its values do not depend on how
    many fields ``x`` holds.

    MKL (the CPU FFT backend) takes another code path for a lone transform than for a batch,
    which changes the last bits; a chaotic flow amplifies such differences into a different
    trajectory. A lone field is therefore transformed as a batch of two identical ones, and
    inputs are made contiguous (strided inputs also take batch-dependent paths).
    """
    x = x.contiguous()
    if x[..., 0, 0].numel() != 1:
        return transform(x)
    pair = x.reshape(x.shape[-2:]).expand(2, *x.shape[-2:])
    out = transform(pair)[0]
    return out.reshape(*x.shape[:-2], *out.shape)


def rfft2(w: torch.Tensor) -> torch.Tensor:
    """Half-spectrum ``torch.fft.rfft2(w)`` over dims (-2, -1), independent of the batch size."""
    return _transform_as_batch(torch.fft.rfft2, w)


def irfft2(w_hat: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Grid values ``torch.fft.irfft2(w_hat, s=shape)``, independent of the batch size."""
    return _transform_as_batch(lambda x: torch.fft.irfft2(x, s=shape), w_hat)


def wavenumbers(
    shape: tuple[int, int], *, device: torch.device | str | None = None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer wavenumbers of ``rfft2`` on ``(0, 2 pi)^2``: ``k_x`` ``(H, 1)`` and ``k_y``
    ``(1, W//2+1)``, real dtype ``dtype``.

    On even grids the Nyquist wavenumbers are kept (``-H/2`` for ``k_x``, ``W/2`` for
    ``k_y``); :func:`derivative_wavenumbers` zeroes them.
    """
    height, width = shape
    k_x = torch.fft.fftfreq(height, d=1.0 / height, dtype=dtype, device=device)
    k_y = torch.fft.rfftfreq(width, d=1.0 / width, dtype=dtype, device=device)
    return k_x[:, None], k_y[None, :]


def derivative_wavenumbers(
    shape: tuple[int, int], *, device: torch.device | str | None = None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wavenumbers for first derivatives: :func:`wavenumbers` with the Nyquist ones zeroed.

    The Nyquist mode of an even grid is its own mirror image, so ``i k`` times it is not the
    spectrum of a real field; zero is the standard real-valued choice.
    """
    k_x, k_y = wavenumbers(shape, device=device, dtype=dtype)
    height, width = shape
    if height % 2 == 0:
        k_x = torch.where(k_x.abs() == height // 2, torch.zeros_like(k_x), k_x)
    if width % 2 == 0:
        k_y = torch.where(k_y.abs() == width // 2, torch.zeros_like(k_y), k_y)
    return k_x, k_y


def dealias_mask(
    shape: tuple[int, int], *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean ``(H, W//2+1)`` mask of the 2/3-rule band ``|k_x| < H/3`` and ``|k_y| < W/3``.

    A product of two fields in the band has modes ``|k| < 2 H / 3`` (per axis), whose
    aliases on the grid all fall outside the band: truncating a product to the band removes
    its aliasing error exactly.
    """
    k_x, k_y = wavenumbers(shape, device=device, dtype=torch.float64)
    return (3.0 * k_x.abs() < shape[0]) & (3.0 * k_y.abs() < shape[1])


class SpectralOperators:
    """Wavenumber tables and the advection operator on one grid shape, device and dtype.

    Use :func:`spectral_operators` to get a cached instance.
    """

    def __init__(
        self, shape: tuple[int, int], *, device: torch.device | str, dtype: torch.dtype
    ) -> None:
        height, width = shape
        self.shape = (height, width)
        k_x, k_y = wavenumbers(self.shape, device=device, dtype=dtype)
        self.squared_wavenumber = k_x**2 + k_y**2
        """``|k|^2`` on the half-spectrum (Nyquist modes included)."""
        self.inverse_laplacian = torch.where(
            self.squared_wavenumber > 0,
            1.0 / self.squared_wavenumber.clamp_min(1.0),
            torch.zeros_like(self.squared_wavenumber),
        )
        """``1 / |k|^2``, 0 at ``k = 0``: ``psi_hat = inverse_laplacian * w_hat``."""
        self.mask = dealias_mask(self.shape, device=device)
        # Full-grid tables for the packed transform of `advection_hat`.
        full_x = torch.fft.fftfreq(height, d=1.0 / height, dtype=dtype, device=device)[:, None]
        full_y = torch.fft.fftfreq(width, d=1.0 / width, dtype=dtype, device=device)[None, :]
        squared = full_x**2 + full_y**2
        inverse = torch.where(squared > 0, 1.0 / squared.clamp_min(1.0), torch.zeros_like(squared))
        if height % 2 == 0:
            full_x = torch.where(full_x.abs() == height // 2, torch.zeros_like(full_x), full_x)
        if width % 2 == 0:
            full_y = torch.where(full_y.abs() == width // 2, torch.zeros_like(full_y), full_y)
        gradient = torch.complex(full_x.expand(height, width), full_y.expand(height, width))
        # (v_x + i v_y)^ = (k_x + i k_y) w_hat / |k|^2 and (w_x + i w_y)^ = i (k_x + i k_y) w_hat.
        self._packed = torch.stack((gradient * inverse, 1j * gradient))
        self._mirror_rows = (-torch.arange(height, device=device)) % height

    def full_spectrum(self, w_hat: torch.Tensor) -> torch.Tensor:
        """The full ``fft2`` spectrum ``(..., H, W)`` of a real field from its half-spectrum,
        by Hermitian symmetry ``w_hat[-k] = conj(w_hat[k])``."""
        width = self.shape[1]
        half = w_hat.shape[-1]
        mirrored = w_hat[..., self._mirror_rows, 1 : width - half + 1].flip(-1).conj()
        return torch.cat((w_hat, mirrored), dim=-1)

    def advection_hat(self, w_hat: torch.Tensor, *, dealias: bool = True) -> torch.Tensor:
        """Half-spectrum of ``v . grad w`` (pseudo-spectral) from ``w_hat`` ``(B, H, W//2+1)``;
        truncated to the 2/3 band with ``dealias``. Differentiable.

        Two real fields travel as one complex one: a single complex inverse FFT of
        ``(v_x + i v_y, w_x + i w_y)`` gives both pairs, and
        ``v . grad w = Re[(v_x + i v_y) conj(w_x + i w_y)]``. This halves the inverse
        transforms compared with four real ones.
        """
        packed = _transform_as_batch(
            torch.fft.ifft2, self.full_spectrum(w_hat).unsqueeze(-3) * self._packed
        )
        velocity, gradient = packed.unbind(dim=-3)
        advection_hat = rfft2((velocity * gradient.conj()).real)
        return advection_hat * self.mask if dealias else advection_hat

    def velocity(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid velocity ``(v_x, v_y)`` of half-spectra ``w_hat``, each ``(..., H, W)``."""
        spectrum = self.full_spectrum(w_hat) * self._packed[0]
        packed = _transform_as_batch(torch.fft.ifft2, spectrum)
        return packed.real, packed.imag


@functools.lru_cache(maxsize=32)
def spectral_operators(
    shape: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> SpectralOperators:
    """A cached :class:`SpectralOperators` for ``shape`` on ``device`` in real ``dtype``.

    Built outside inference mode, so that the cached tables also serve autograd later.
    """
    with torch.inference_mode(False):
        return SpectralOperators(shape, device=device, dtype=dtype)


__all__ = [
    "SpectralOperators",
    "dealias_mask",
    "derivative_wavenumbers",
    "irfft2",
    "rfft2",
    "spectral_operators",
    "wavenumbers",
]
