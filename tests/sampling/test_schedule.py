"""Karras noise schedule: its formula, endpoints, order, and schedule validation."""

import math

import pytest
import torch

from pirf.errors import PirfError
from pirf.sampling import karras_sigmas, noise_levels


def formula(i: int, n: int, low: float, high: float, rho: float) -> float:
    """Karras et al. (2022), eq. 5, evaluated with Python floats."""
    return (high ** (1 / rho) + i / (n - 1) * (low ** (1 / rho) - high ** (1 / rho))) ** rho


@pytest.mark.parametrize(("n", "low", "high", "rho"), [(5, 0.002, 80.0, 7.0), (18, 0.01, 5.0, 3.0)])
def test_schedule_matches_its_formula(n, low, high, rho):
    sigmas = karras_sigmas(n, low, high, rho)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (n + 1,)
    expected = [formula(i, n, low, high, rho) for i in range(n)] + [0.0]
    assert sigmas.tolist() == pytest.approx(expected, rel=1e-13, abs=0)


def test_defaults_endpoints_and_monotonicity():
    sigmas = karras_sigmas(20)
    assert sigmas[0].item() == 80.0 and sigmas[19].item() == 0.002 and sigmas[20].item() == 0.0
    assert bool((sigmas.diff() < 0).all())
    # rho = 7 spends most steps at low noise: half the levels are below sigma = 2.5.
    assert sigmas[10].item() < 2.5
    single = karras_sigmas(1)
    assert single.tolist() == [80.0, 0.0]
    # rho = 1 is a uniform grid.
    assert karras_sigmas(5, 1.0, 5.0, 1.0).tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert math.isclose(karras_sigmas(3, 1.0, 4.0, 2.0)[1].item(), 2.25)


def test_bad_schedules_are_refused():
    for steps in (0, -3, 2.5, True):
        with pytest.raises(PirfError, match="positive integer"):
            karras_sigmas(steps)
    with pytest.raises(PirfError, match="sigma_min < sigma_max"):
        karras_sigmas(10, 1.0, 0.5)
    with pytest.raises(PirfError, match="rho"):
        karras_sigmas(10, rho=0.0)
    assert noise_levels(torch.tensor([2.0, 1.0, 0.0])) == [2.0, 1.0, 0.0]
    assert noise_levels([2.0, 0.5]) == [2.0, 0.5]
    for bad in ([1.0], [1.0, 2.0], [1.0, 0.0, 0.0], [1.0, -0.5], [0.0, 0.0]):
        with pytest.raises(PirfError, match=r"noise (levels|schedule)"):
            noise_levels(bad)
