"""Power spectra of 2-D fields: radial averages and per-scale statistics.

Fields ``(N, C, H, W)`` are transformed with a 2-D FFT per channel. Along an axis that the
grid declares non-periodic, the field is first multiplied by a Hann window (normalised to
unit mean square): without it the jump between opposite edges of the implicit periodic
extension leaks power as ``k^-2`` into every wavenumber and buries the fine-scale spectrum
that the metrics are meant to see. Samples and reference data go through the same window,
so comparisons between them are like for like.

Wavenumbers are integers in cycles per field (index units), ``k = sqrt(k0^2 + k1^2)``
rounded to the nearest integer; only rings up to ``K = min(H, W) // 2`` are complete, so
the radial spectrum has bins ``0..K``. Power is ``|F|^2 / (H W)^2``, so the sum over all
modes is the (windowed) field's mean square (Parseval), and the radial spectrum is the mean
over the modes of a ring.

Per-scale statistics summarise each sample in dyadic wavenumber bands ``[1, 2), [2, 4),
..., [2^(J-1), K]``: the log10 power of every channel in every band, and for every pair of
channels the band's spectral coherence ``sum Re(F_i conj(F_j)) / sqrt(sum |F_i|^2 sum
|F_j|^2)`` (in [-1, 1]; it measures whether two channels belong together at that scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch

LOG_POWER_FLOOR = 1e-30
"""Added to band powers before the logarithm, so that an identically zero band is finite."""


@dataclass(frozen=True)
class Spectra:
    """Per-sample spectral quantities of a set of fields (float64)."""

    radial: torch.Tensor
    """Radially averaged power ``(N, C, K + 1)``; bin ``k`` holds ring ``k``."""
    band_power: torch.Tensor
    """Summed power per dyadic band ``(N, C, J)``."""
    coherence: torch.Tensor
    """Coherence of each channel pair (``itertools.combinations`` order) per band ``(N, P, J)``."""

    def features(self) -> torch.Tensor:
        """Per-sample per-scale statistics ``(N, C J + P J)``: log10 band powers, coherences."""
        log_power = torch.log10(self.band_power + LOG_POWER_FLOOR).flatten(1)
        return torch.cat([log_power, self.coherence.flatten(1)], dim=1)


def max_wavenumber(shape: tuple[int, int]) -> int:
    """``K = min(H, W) // 2``: the largest wavenumber whose ring lies inside the spectrum."""
    return min(shape) // 2


def band_edges(k_max: int) -> list[int]:
    """Dyadic band edges ``[1, 2, 4, ..., 2^(J-1), K + 1]`` with ``J = floor(log2 K)``.

    Band ``j`` holds the rings ``edges[j] <= k < edges[j + 1]``; the last band absorbs
    ``K`` itself, so no band is a lone partial ring.
    """
    if k_max < 1:
        raise ValueError(f"need at least one nonzero wavenumber, got K = {k_max}")
    bands = max(1, math.floor(math.log2(k_max)))
    return [2**j for j in range(bands)] + [k_max + 1]


def radial_index(shape: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """Ring of every FFT mode ``(H * W,)`` (row-major); modes beyond ``K`` get ``K + 1``."""
    h, w = shape
    k0 = torch.fft.fftfreq(h, d=1.0 / h, dtype=torch.float64, device=device)
    k1 = torch.fft.fftfreq(w, d=1.0 / w, dtype=torch.float64, device=device)
    radius = torch.sqrt(k0[:, None] ** 2 + k1[None, :] ** 2)
    rings = torch.round(radius).long().flatten()
    k_max = max_wavenumber(shape)
    return torch.where(rings <= k_max, rings, torch.full_like(rings, k_max + 1))


def band_index(shape: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """Dyadic band of every FFT mode ``(H * W,)``; ring 0 and rings beyond ``K`` get ``J``."""
    rings = radial_index(shape, device)
    edges = torch.tensor(band_edges(max_wavenumber(shape)), device=rings.device)
    bands = torch.bucketize(rings, edges, right=True) - 1
    outside = (rings < 1) | (rings > max_wavenumber(shape))
    return torch.where(outside, torch.full_like(bands, len(edges) - 1), bands)


def window(
    shape: tuple[int, int],
    periodic: tuple[bool, bool],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Separable Hann window over the non-periodic axes, unit mean square; ``None`` if both
    axes are periodic."""
    if all(periodic):
        return None
    factors = []
    for n, is_periodic in zip(shape, periodic, strict=True):
        if is_periodic or n < 3:
            factors.append(torch.ones(n, dtype=dtype, device=device))
        else:
            hann = torch.hann_window(n, periodic=False, dtype=dtype, device=device)
            factors.append(hann / hann.pow(2).mean().sqrt())
    return factors[0][:, None] * factors[1][None, :]


def fourier_modes(fields: torch.Tensor, periodic: tuple[bool, bool]) -> torch.Tensor:
    """Windowed 2-D FFT of ``(N, C, H, W)`` in float64, scaled by ``1 / (H W)``."""
    values = fields.detach().to(torch.float64)
    taper = window(tuple(values.shape[-2:]), periodic, device=values.device)
    if taper is not None:
        values = values * taper
    return torch.fft.fft2(values, norm="forward")


def _ring_sum(values: torch.Tensor, index: torch.Tensor, bins: int) -> torch.Tensor:
    """Sum ``values (..., H * W)`` over the groups of ``index``; returns ``(..., bins)``."""
    out = torch.zeros((*values.shape[:-1], bins), dtype=values.dtype, device=values.device)
    return out.index_add_(-1, index, values)


def spectra(
    fields: torch.Tensor, periodic: tuple[bool, bool] = (True, True), *, batch_size: int = 128
) -> Spectra:
    """Radial spectra, band powers and band coherences of every sample of ``fields``.

    ``periodic`` says which axes need no window (see the module docstring). Works in float64
    on the fields' device, ``batch_size`` samples at a time.
    """
    if fields.ndim != 4:
        raise ValueError(f"expected fields (N, C, H, W), got shape {tuple(fields.shape)}")
    shape = (fields.shape[-2], fields.shape[-1])
    k_max = max_wavenumber(shape)
    rings = radial_index(shape, fields.device)
    bands = band_index(shape, fields.device)
    n_bands = len(band_edges(k_max)) - 1
    ring_counts = _ring_sum(torch.ones_like(rings, dtype=torch.float64), rings, k_max + 2)
    pairs = list(combinations(range(fields.shape[1]), 2))
    radial, band_power, coherence = [], [], []
    for start in range(0, fields.shape[0], batch_size):
        modes = fourier_modes(fields[start : start + batch_size], periodic).flatten(-2)
        power = modes.real**2 + modes.imag**2
        radial.append((_ring_sum(power, rings, k_max + 2) / ring_counts)[..., : k_max + 1])
        chunk_bands = _ring_sum(power, bands, n_bands + 1)[..., :n_bands]
        band_power.append(chunk_bands)
        cross = []
        for i, j in pairs:
            product = (modes[:, i] * modes[:, j].conj()).real
            covariance = _ring_sum(product, bands, n_bands + 1)[..., :n_bands]
            scale = (chunk_bands[:, i] * chunk_bands[:, j]).sqrt()
            cross.append(covariance / scale.clamp_min(torch.finfo(torch.float64).tiny))
        coherence.append(
            torch.stack(cross, dim=1)
            if cross
            else chunk_bands.new_zeros((chunk_bands.shape[0], 0, n_bands))
        )
    return Spectra(torch.cat(radial), torch.cat(band_power), torch.cat(coherence))


def radial_power_spectrum(
    fields: torch.Tensor, periodic: tuple[bool, bool] = (True, True), *, batch_size: int = 128
) -> torch.Tensor:
    """Radially averaged power spectrum of every sample and channel, ``(N, C, K + 1)``."""
    return spectra(fields, periodic, batch_size=batch_size).radial


def log_spectrum_error(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean over wavenumbers ``1..K`` of ``|log10(estimate / reference)|``, per channel.

    ``estimate`` and ``reference`` are mean spectra ``(C, K + 1)``; the mean (``k = 0``) is
    left to the distribution distance. The unit is decades: 0.1 is a 26 % typical mismatch.
    """
    tiny = torch.finfo(torch.float64).tiny
    ratio = estimate[:, 1:].clamp_min(tiny).log10() - reference[:, 1:].clamp_min(tiny).log10()
    return ratio.abs().mean(dim=-1)
