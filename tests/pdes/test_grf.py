"""Gaussian random fields: intended covariance and spectrum, and batch-independent draws.

The spectral checks recover each draw's mode coefficients with an independent transform
(scipy's DCT-I for the cosine field, the FFT for the periodic one) and compare their
empirical variances with the covariance the module documents. With ``N`` independent
draws, a variance estimate has relative standard deviation ``sqrt(2 / (N - 1))``; the bands
below are about five of those, so a correct sampler fails them with negligible probability
(and never, for the fixed seeds), while a wrong amplitude, exponent or normalisation factor
lands far outside.
"""

import math

import numpy as np
import pytest
import scipy.fft
import torch

from pirf.pdes.grf import cosine_grf, periodic_grf_1d
from pirf.seeding import unit_generators

PI = math.pi


def expected_cosine_variances(modes: int, alpha: float, tau: float) -> np.ndarray:
    """KL variances ``tau^(2 alpha - 2) (pi^2 |k|^2 + tau^2)^(-alpha)``, mean mode zero."""
    k = np.arange(modes)
    eigenvalues = PI**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    variances = tau ** (2 * alpha - 2) * (eigenvalues + tau**2) ** (-alpha)
    variances[0, 0] = 0.0
    return variances


def cosine_coefficients(fields: np.ndarray) -> np.ndarray:
    """Coefficients ``c_k`` of ``f = sum_k c_k phi_k1(x) phi_k2(y)`` from node values
    ``(N, R, R)``, with ``phi_0 = 1``, ``phi_k = sqrt(2) cos(pi k x)``.

    Unnormalised DCT-I per axis maps ``phi_l`` to ``2 sqrt2_l norm_l`` at ``l``, with the
    discrete (trapezoid) norm ``norm_l = (R - 1) / 2``, or ``R - 1`` at both ends.
    """
    resolution = fields.shape[-1]
    transformed = scipy.fft.dctn(fields, type=1, axes=(-2, -1))
    scale = np.full(resolution, math.sqrt(2.0) * (resolution - 1))
    scale[0] = 2.0 * (resolution - 1)
    scale[-1] = 2.0 * math.sqrt(2.0) * (resolution - 1)
    return transformed / (scale[:, None] * scale[None, :])


def relative_band(samples: int) -> float:
    """Five standard deviations of a variance estimate from ``samples`` draws."""
    return 5.0 * math.sqrt(2.0 / (samples - 1))


@pytest.mark.parametrize(("alpha", "tau"), [(2.0, 3.0), (3.0, 5.0)])
def test_cosine_grf_mode_variances_follow_the_covariance(alpha, tau):
    samples, resolution = 600, 17
    fields = cosine_grf(unit_generators(0, 0, range(samples)), resolution, alpha, tau).numpy()
    coefficients = cosine_coefficients(fields)
    # The mean mode is dropped exactly (up to rounding of the synthesis).
    assert np.abs(coefficients[:, 0, 0]).max() < 1e-12 * np.abs(coefficients).max()
    expected = expected_cosine_variances(resolution, alpha, tau)
    observed = (coefficients**2).mean(axis=0)  # the coefficients have mean zero
    ratio = observed.ravel()[1:] / expected.ravel()[1:]
    band = relative_band(samples)
    assert np.abs(ratio - 1.0).max() < band, np.abs(ratio - 1.0).max()
    # 288 independent modes: their mean ratio is known far more tightly.
    assert abs(ratio.mean() - 1.0) < band / math.sqrt(ratio.size)
    # Decay: log-variance against log(lambda_k + tau^2) has slope -alpha.
    k = np.arange(resolution)
    shifted = (PI**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2).ravel()[1:]
    slope = np.polyfit(np.log(shifted), np.log(observed.ravel()[1:]), 1)[0]
    assert abs(slope + alpha) < 0.02, slope


def test_cosine_grf_pointwise_variance_is_the_kl_sum():
    samples, resolution = 2000, 9
    fields = cosine_grf(unit_generators(1, 0, range(samples)), resolution).numpy()
    variances = expected_cosine_variances(resolution, 2.0, 3.0)
    x = np.linspace(0.0, 1.0, resolution)
    squared_basis = 2.0 * np.cos(PI * np.outer(x, np.arange(resolution))) ** 2
    squared_basis[:, 0] = 1.0
    expected = squared_basis @ variances @ squared_basis.T  # sum_k var_k phi_k(x)^2 phi_k(y)^2
    # Not stationary: at the corners every basis function peaks (the centre misses all odd
    # modes), so the corner variance is several times the centre's (8.7 here).
    assert expected[0, 0] > 3.0 * expected[resolution // 2, resolution // 2]
    observed = fields.var(axis=0, ddof=1)
    assert np.abs(observed / expected - 1.0).max() < relative_band(samples)
    standard_error = np.sqrt(expected / samples)
    assert np.abs(fields.mean(axis=0) / standard_error).max() < 5.0


def test_cosine_grf_respects_the_number_of_modes():
    fields = cosine_grf(unit_generators(2, 0, range(4)), 17, modes=6).numpy()
    coefficients = cosine_coefficients(fields)
    assert np.abs(coefficients[:, 6:, :]).max() < 1e-12
    assert np.abs(coefficients[:, :, 6:]).max() < 1e-12
    assert np.abs(coefficients[:, 1:6, 1:6]).min() > 0.0


def test_periodic_grf_mode_variances_and_stationary_variance():
    samples, points, modes = 2000, 64, 15
    gamma, tau, sigma = 2.5, 7.0, 49.0
    grid = torch.arange(points, dtype=torch.float64) / points
    fields = periodic_grf_1d(
        unit_generators(3, 0, range(samples)), grid, gamma, tau, sigma, modes=modes
    ).numpy()
    spectrum = np.fft.rfft(fields, axis=-1)
    # f = sum_k a_k sqrt(2) (xi_k cos + eta_k sin)  =>  F_k = a_k sqrt(2) N (xi_k - i eta_k) / 2
    cos_part = spectrum[:, 1 : modes + 1].real * math.sqrt(2.0) / points
    sin_part = -spectrum[:, 1 : modes + 1].imag * math.sqrt(2.0) / points
    k = np.arange(1, modes + 1)
    expected = sigma**2 * (4 * PI**2 * k**2 + tau**2) ** (-gamma)
    ratio = np.concatenate([(cos_part**2).mean(0), (sin_part**2).mean(0)]) / np.tile(expected, 2)
    band = relative_band(samples)
    assert np.abs(ratio - 1.0).max() < band, ratio
    assert abs(ratio.mean() - 1.0) < band / math.sqrt(ratio.size)
    # No mean mode and nothing above the requested modes.
    scale = np.abs(spectrum).max()
    assert np.abs(spectrum[:, 0]).max() < 1e-12 * scale
    assert np.abs(spectrum[:, modes + 1 :]).max() < 1e-12 * scale
    # Stationary: the same variance 2 sum_k a_k^2 (sqrt(2) cos and sin squared sum to 2).
    observed = fields.var(axis=0, ddof=1)
    assert np.abs(observed / (2.0 * expected.sum()) - 1.0).max() < band


def test_cosine_grf_is_identical_whatever_the_batch():
    indices = list(range(9))
    full = cosine_grf(unit_generators(7, "test", indices), 17)
    pieces = torch.cat(
        [
            cosine_grf(unit_generators(7, "test", part), 17)
            for part in ([0], [1, 2, 3], [4, 5, 6, 7, 8])
        ]
    )
    assert torch.equal(full, pieces)
    backwards = cosine_grf(unit_generators(7, "test", indices[::-1]), 17)
    assert torch.equal(backwards.flip(0), full)
    # Another unit, seed or stream gives another field.
    assert not torch.allclose(full[0], full[1])
    assert not torch.allclose(full[0], cosine_grf(unit_generators(8, "test", [0]), 17)[0])
    assert not torch.allclose(full[0], cosine_grf(unit_generators(7, "train", [0]), 17)[0])


def test_periodic_grf_is_identical_whatever_the_batch():
    grid = torch.arange(33, dtype=torch.float64) / 33

    def draw(indices):
        return periodic_grf_1d(unit_generators(5, 0, indices), grid, 2.5, 7.0, 49.0, modes=15)

    full = draw(range(11))
    pieces = torch.cat([draw(part) for part in ([0, 1], [2], range(3, 11))])
    assert torch.equal(full, pieces)
    assert torch.equal(draw(range(10, -1, -1)).flip(0), full)
    assert not torch.allclose(full[0], full[1])
