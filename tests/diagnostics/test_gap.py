"""The pieces of the value-gap measurement: rank correlation against scipy, the schedule
through the requested levels, the states on it, the per-level summary, and the checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from pirf.diagnostics.gap import (
    average_ranks,
    check_request,
    spearman,
    summarise_level,
    trajectory_schedule,
    trajectory_states,
)
from pirf.errors import PirfError
from pirf.sampling import initial_noise, integrate, karras_sigmas
from tests.sampling.gaussian import gaussian_denoiser


def test_average_ranks_and_spearman_match_scipy_with_ties():
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, 6, (40,), generator=generator).double()  # many ties
    second = first + torch.randn(40, generator=generator, dtype=torch.float64)
    expected_ranks = torch.from_numpy(stats.rankdata(first.numpy()))
    torch.testing.assert_close(average_ranks(first), expected_ranks, rtol=0, atol=0)
    expected = stats.spearmanr(first.numpy(), second.numpy()).statistic
    assert spearman(first, second) == pytest.approx(expected, rel=1e-12)
    assert spearman(second, torch.exp(second)) == pytest.approx(1.0, abs=1e-15)
    assert spearman(second, -second) == pytest.approx(-1.0, abs=1e-15)
    assert spearman(second, torch.ones(40)) is None
    assert spearman(second[:1], second[:1]) is None
    with pytest.raises(PirfError):
        spearman(second, second[:3])


def test_the_trajectory_schedule_passes_through_every_level():
    schedule = trajectory_schedule([5.0, 0.3], 10)
    assert 5.0 in schedule and 0.3 in schedule and schedule[-1] == 0.0
    assert all(a > b for a, b in itertools.pairwise(schedule))
    assert set(karras_sigmas(10).tolist()) <= set(schedule)
    assert len(schedule) == 13


def test_trajectory_states_are_those_of_the_sampler_on_that_schedule():
    noise = initial_noise(3, (1, 4, 4), 0).double()
    states = trajectory_states(gaussian_denoiser, noise, [2.0, 0.1], steps=8)
    schedule = trajectory_schedule([2.0, 0.1], 8)
    for level in (2.0, 0.1):
        stop = schedule.index(level)
        expected = integrate(gaussian_denoiser, noise * schedule[0], schedule, stop=stop)
        torch.testing.assert_close(states[level], expected, rtol=0, atol=0)


def test_a_level_summary_by_hand():
    one_step = torch.tensor([-4.0, -2.0, -1.0], dtype=torch.float64)
    ode = torch.tensor([-2.0, -1.0, -0.5], dtype=torch.float64)
    sde = torch.tensor([[-1.0, -3.0], [-1.0, -1.0], [-0.5, -0.5]], dtype=torch.float64)
    clean = torch.tensor([-1.0, -1.0, -2.0], dtype=torch.float64)
    row = summarise_level(0.5, "data", one_step, ode, sde, clean=clean)
    # Run means -2, -1, -0.5: the value estimates of the three states.
    assert row["one_step"] == pytest.approx(-7 / 3) and row["sde"] == pytest.approx(-7 / 6)
    assert row["ratio_sde"] == pytest.approx(2.0) and row["ratio_ode"] == pytest.approx(2.0)
    assert row["gap_sde"] == pytest.approx(7 / 6)
    assert row["spearman_ode"] == pytest.approx(1.0) and row["spearman_sde"] == pytest.approx(1.0)
    assert row["sde_run_se"] == pytest.approx(1 / 3)  # (sqrt(2) / sqrt(2) + 0 + 0) / 3
    assert row["one_step_se"] == pytest.approx(float(one_step.std()) / math.sqrt(3))
    assert row["clean"] == pytest.approx(-4 / 3) and row["ratio_clean"] == pytest.approx(7 / 4)
    assert (row["n"], row["runs"], row["kind"], row["sigma"]) == (3, 2, "data", 0.5)
    assert "clean" not in summarise_level(0.5, "trajectory", one_step, ode, sde)


@pytest.mark.parametrize(
    ("sigmas", "steps", "runs", "match"),
    [
        ([0.001], 10, 2, "outside"),
        ([100.0], 10, 2, "outside"),
        ([], 10, 2, "at least one"),
        ([1.0], 0, 2, "steps"),
        ([1.0], 10, 0, "runs"),
    ],
)
def test_bad_requests_are_refused(sigmas, steps, runs, match):
    with pytest.raises(PirfError, match=match):
        check_request(sigmas, steps=steps, runs=runs)


def test_levels_come_back_decreasing_and_unique():
    assert check_request([0.1, 5, 0.1, 1], steps=1, runs=1) == [5.0, 1.0, 0.1]
