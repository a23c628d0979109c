"""The fidelity band: MMD may not grow, diversity may not move, by more than the factor."""

from __future__ import annotations

import pytest

from pirf.evaluation.band import DEFAULT_BAND, FidelityBand

BASE = {"mmd": 0.7, "diversity": 1.02}


def test_the_band_bounds_mmd_above_and_diversity_on_both_sides():
    band = FidelityBand(DEFAULT_BAND, BASE)
    assert band.inside({"mmd": 0.0, "diversity": 1.02})
    assert band.inside({"mmd": 1.04, "diversity": 1.02 / 1.5})
    assert band.inside({"mmd": 0.7, "diversity": 1.53})
    assert band.violations({"mmd": 1.06, "diversity": 1.0}) == [
        "mmd 1.06 is above 1.05 (1.5 x the base model's 0.7)"
    ]
    # the Helmholtz run of docs/BENCHMARKS.md: MMD fine, the samples shrank
    assert band.violations({"mmd": 0.788, "diversity": 0.43}) == [
        "diversity 0.43 is below 0.68 (the base model's 1.02 / 1.5)"
    ]
    both = band.violations({"mmd": 2.0, "diversity": 2.0})
    assert [v.split()[0] for v in both] == ["mmd", "diversity"]


@pytest.mark.parametrize(
    ("band", "base", "fidelity"),
    [
        (None, BASE, {"mmd": 9.0, "diversity": 0.01}),
        (1.5, {}, {"mmd": 9.0, "diversity": 0.01}),
        (1.5, {"mmd": None, "diversity": None}, {"mmd": 9.0, "diversity": 0.01}),
        (1.5, BASE, {"mmd": None}),
    ],
)
def test_nothing_to_leave_without_a_band_or_values(band, base, fidelity):
    assert FidelityBand(band, base).inside(fidelity)
