"""Power spectra: single Fourier modes land in their ring, Parseval holds, bands, coherence."""

import math

import pytest
import torch

from pirf.evaluation.spectra import (
    band_edges,
    band_index,
    fourier_modes,
    log_spectrum_error,
    radial_index,
    radial_power_spectrum,
    spectra,
    window,
)

N = 32


def periodic_mode(k0: int, k1: int, n: int = N) -> torch.Tensor:
    j = torch.arange(n, dtype=torch.float64)
    return torch.cos(2 * math.pi * (k0 * j[:, None] + k1 * j[None, :]) / n)


def ring_size(radius: int, n: int = N) -> int:
    """Modes of an n x n FFT whose rounded |k| is ``radius``, counted one by one."""
    wavenumbers = [k if k < n / 2 else k - n for k in range(n)]
    return sum(round(math.hypot(a, b)) == radius for a in wavenumbers for b in wavenumbers)


def test_single_mode_puts_all_its_power_in_its_ring():
    fields = periodic_mode(3, 4).view(1, 1, N, N)  # |k| = 5
    spectrum = radial_power_spectrum(fields)[0, 0]
    assert spectrum.shape == (N // 2 + 1,)
    # cos has power 1/4 at +k and at -k: the mean square 1/2, spread over ring 5's modes.
    assert float(spectrum[5]) * ring_size(5) == pytest.approx(0.5, rel=1e-12)
    others = torch.cat([spectrum[:5], spectrum[6:]])
    assert float(others.abs().max()) < 1e-28


def test_modes_on_the_axes_and_diagonals_land_in_rounded_rings():
    for (k0, k1), ring in {(7, 0): 7, (0, 11): 11, (2, 2): 3, (5, 5): 7}.items():
        spectrum = radial_power_spectrum(periodic_mode(k0, k1).view(1, 1, N, N))[0, 0]
        assert int(spectrum.argmax()) == ring


def test_parseval_total_power_is_the_mean_square():
    generator = torch.Generator().manual_seed(0)
    fields = torch.randn(3, 2, N, N, generator=generator, dtype=torch.float64)
    power = fourier_modes(fields, (True, True)).abs().pow(2).sum(dim=(-2, -1))
    assert torch.allclose(power, fields.pow(2).mean(dim=(-2, -1)))
    # The radial spectrum times ring sizes recovers the power inside the inscribed circle.
    spectrum = radial_power_spectrum(fields)
    sizes = torch.tensor([ring_size(k) for k in range(N // 2 + 1)], dtype=torch.float64)
    inside = fourier_modes(fields, (True, True)).abs().pow(2).flatten(-2)
    inside = inside[..., radial_index((N, N)) <= N // 2].sum(dim=-1)
    assert torch.allclose((spectrum * sizes).sum(dim=-1), inside)


def test_window_on_non_periodic_axes_keeps_a_mode_local():
    # Five cycles over a node grid with both ends stored: not periodic on the FFT grid.
    x = torch.linspace(0.0, 1.0, N, dtype=torch.float64)
    fields = torch.cos(2 * math.pi * 5 * x)[:, None].expand(N, N).reshape(1, 1, N, N)
    windowed = radial_power_spectrum(fields, (False, False))[0, 0]
    raw = radial_power_spectrum(fields, (True, True))[0, 0]
    assert int(windowed.argmax()) == 5
    # Without the window the edge jump leaks power into every ring; with it, far rings
    # are orders of magnitude quieter.
    assert float(windowed[12:].max()) < 1e-5 * float(windowed[5])
    assert float(raw[10:].sum()) > 20 * float(windowed[10:].sum())  # measured: 80 x


def test_window_has_unit_mean_square_and_is_absent_when_periodic():
    assert window((N, N), (True, True)) is None
    taper = window((N, 24), (False, True))
    assert taper.shape == (N, 24)
    assert float(taper.pow(2).mean()) == pytest.approx(1.0)
    assert torch.allclose(taper[:, 0], taper[:, 7])  # constant along the periodic axis
    assert float(taper[0, 0]) == 0.0


def test_band_edges_and_band_index():
    assert band_edges(16) == [1, 2, 4, 8, 17]
    assert band_edges(64) == [1, 2, 4, 8, 16, 32, 65]
    assert band_edges(5) == [1, 2, 6]
    assert band_edges(1) == [1, 2]
    rings = radial_index((N, N))
    bands = band_index((N, N))
    assert torch.all(bands[rings == 0] == 4) and torch.all(bands[rings > 16] == 4)
    assert torch.all(bands[rings == 1] == 0) and torch.all(bands[rings == 3] == 1)
    assert torch.all(bands[(rings >= 8) & (rings <= 16)] == 3)


def test_coherence_sees_whether_channels_belong_together():
    generator = torch.Generator().manual_seed(1)
    f = torch.randn(4, 1, N, N, generator=generator, dtype=torch.float64)
    g = torch.randn(4, 1, N, N, generator=generator, dtype=torch.float64)
    same = spectra(torch.cat([f, 2 * f], dim=1)).coherence
    opposite = spectra(torch.cat([f, -f], dim=1)).coherence
    independent = spectra(torch.cat([f, g], dim=1)).coherence
    assert torch.allclose(same, torch.ones_like(same))
    assert torch.allclose(opposite, -torch.ones_like(opposite))
    # Independent white fields: the band [8, 16] has ~600 modes, coherence ~ 1/sqrt(600).
    assert float(independent[:, 0, -1].abs().max()) < 0.2


def test_band_power_sums_the_power_of_the_band():
    fields = periodic_mode(3, 0).view(1, 1, N, N) + 2 * periodic_mode(0, 9).view(1, 1, N, N)
    result = spectra(fields)
    # cos(3 x) lies in band [2, 4) with power 1/2; 2 cos(9 y) in [8, 16] with power 2.
    assert torch.allclose(
        result.band_power[0, 0], torch.tensor([0.0, 0.5, 0.0, 2.0], dtype=torch.float64)
    )
    features = result.features()
    assert features.shape == (1, 4)  # one channel, no pairs
    assert float(features[0, 3]) == pytest.approx(math.log10(2.0))


def test_log_spectrum_error_is_in_decades_and_ignores_the_mean():
    reference = torch.rand(2, 9, dtype=torch.float64) + 0.1
    assert torch.allclose(log_spectrum_error(10 * reference, reference), torch.ones(2).double())
    assert torch.allclose(log_spectrum_error(reference, reference), torch.zeros(2).double())
    shifted_mean = reference.clone()
    shifted_mean[:, 0] *= 100
    assert torch.allclose(log_spectrum_error(shifted_mean, reference), torch.zeros(2).double())


def test_batching_does_not_change_spectra():
    generator = torch.Generator().manual_seed(3)
    fields = torch.randn(7, 3, 16, 20, generator=generator, dtype=torch.float64)
    one = spectra(fields, (False, True), batch_size=2)
    all_at_once = spectra(fields, (False, True), batch_size=64)
    assert torch.equal(one.radial, all_at_once.radial)
    assert torch.equal(one.coherence, all_at_once.coherence)
    assert one.radial.shape == (7, 3, 9) and one.coherence.shape == (7, 3, 3)
