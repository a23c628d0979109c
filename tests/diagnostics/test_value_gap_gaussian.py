"""The value-gap machinery on Gaussian data with its exact denoiser, where the value of a
noisy state is known in closed form (``tests/diagnostics/gaussian.py``).

Tolerances. The stochastic estimates are compared with the closed form within four
standard errors of their Monte-Carlo mean (the standard error is measured from the same
runs, ``gap_sde_se``: states are independent, so it is the spread of the per-state run
means over sqrt(n)). With the seeds fixed the test is deterministic; under another seed a
correct implementation would fail with probability about 6e-5 per comparison. 100 states
of 100 runs make that error 1-2 % of the gap at sigma >= 1 and 20 % at sigma = 0.05, so
the test tells the gap from zero at every level (by more than four standard errors) and
would catch a sampler whose value were off by a tenth at sigma >= 1. 60 continuation steps
keep the churned sampler's discretisation bias under one standard error at every level
(measured against 200 states x 200 runs: it is the bias at 20 steps, up to 6 standard
errors at sigma = 5, that sets this count).
"""

from __future__ import annotations

import math

import pytest
import torch

from pirf.diagnostics.gap import data_noise, measure_value_gap, trajectory_states
from pirf.diagnostics.value import ode_reward, one_step_reward, sde_rewards
from pirf.sampling import initial_noise
from tests.diagnostics import gaussian

SIGMAS = (5.0, 1.0, 0.3, 0.05)
STEPS = 60


@pytest.fixture(scope="module")
def measured() -> dict:
    clean = gaussian.draw_data(100, seed=0)
    return measure_value_gap(
        gaussian.denoiser,
        gaussian.reward,
        clean,
        SIGMAS,
        steps=STEPS,
        runs=100,
        seed=0,
        batch_size=100_000,
    )


def _rows(measured: dict, kind: str) -> dict[float, dict]:
    return {row["sigma"]: row for row in measured["rows"] if row["kind"] == kind}


@pytest.mark.parametrize("kind", ["data", "trajectory"])
def test_stochastic_continuations_reproduce_the_closed_form_gap(measured, kind):
    rows = _rows(measured, kind)
    assert sorted(rows, reverse=True) == list(SIGMAS)
    for sigma, row in rows.items():
        exact = gaussian.value_gap(sigma)
        assert row["n"] == 100 and row["runs"] == 100
        assert abs(row["gap_sde"] - exact) < 4 * row["gap_sde_se"], (sigma, row["gap_sde"], exact)
        assert row["gap_sde_se"] < abs(exact) / 4  # the comparison has power
        # The one-step value overstates every state's value by the same amount here, so
        # the ranks agree wherever the one-step values spread across states by more than
        # the run means' Monte-Carlo error (sigma <= 1; at sigma = 5 D(x) is nearly the
        # data mean for every state and the noise of the runs decides the ranks).
        spread = row["one_step_se"] * math.sqrt(row["n"])
        if spread > 3 * row["sde_run_se"]:
            assert row["spearman_sde"] > 0.9, (sigma, row["spearman_sde"])


def test_one_step_estimate_overstates_the_data_reward_by_the_posterior_trace(measured):
    # E[r(D(x_sigma))] - E[r(x0)] = tr(A C A^T): the Jensen gap on the data.
    per_state = measured["per_state"]["data"]
    for sigma in SIGMAS:
        values = per_state[str(sigma)]
        difference = torch.tensor(values["one_step"]) - torch.tensor(values["clean"])
        error = float(difference.std()) / math.sqrt(difference.numel())
        assert abs(float(difference.mean()) + gaussian.value_gap(sigma)) < 4 * error


@pytest.mark.parametrize("sigma", SIGMAS)
def test_deterministic_continuation_is_the_exact_flow(sigma):
    # The probability-flow ODE of Gaussian data is linear and solved exactly by
    # gaussian.flow; the Heun continuation must land on it state by state, with the
    # second-order convergence of Heun's method (tripling the steps divides the error by
    # about 9; 6 allows for the schedule's uneven spacing). At 60 steps the worst state is
    # off by 1 % of the mean reward from sigma = 5, where the data's smallest scale
    # (sqrt(0.1)) makes the flow stiffest, and by 0.15 % from sigma = 1; at sigma = 0.05
    # the error is the floor 4e-5 of stopping at sigma_min (sigma_min^2 / 0.1).
    states = gaussian.draw_data(50, seed=1) + sigma * data_noise(50, gaussian.SHAPE, 2)
    exact = gaussian.reward(gaussian.flow(states, sigma, 0.0))
    errors = {}
    for steps in (20, STEPS):
        reached = ode_reward(gaussian.denoiser, gaussian.reward, states, sigma, steps=steps)
        errors[steps] = float((reached - exact).abs().max() / exact.abs().mean())
    assert errors[STEPS] < 2e-2
    assert errors[STEPS] < errors[20] / 6 or errors[STEPS] < 1e-4


@pytest.mark.parametrize("sigma", [5.0, 0.3])
def test_deterministic_sampler_reaches_the_data_reward_in_expectation(sigma):
    # Both kinds of state are distributed as the data blurred by sigma, which the ODE maps
    # back onto the data distribution: the mean reached reward is E[r(x0)] within the
    # Monte-Carlo error of 4000 states (about 2 % of it).
    n = 4000
    expected = gaussian.data_reward()
    data_states = gaussian.draw_data(n, seed=3) + sigma * data_noise(n, gaussian.SHAPE, 4)
    on_trajectory = trajectory_states(
        gaussian.denoiser, initial_noise(n, gaussian.SHAPE, 5).double(), [sigma], steps=STEPS
    )[sigma]
    for states in (data_states, on_trajectory):
        reached = ode_reward(gaussian.denoiser, gaussian.reward, states, sigma, steps=STEPS)
        error = float(reached.std()) / math.sqrt(n)
        assert error < 0.03 * abs(expected)
        assert abs(float(reached.mean()) - expected) < 4 * error


def test_one_step_reward_is_the_reward_of_the_posterior_mean():
    states = gaussian.draw_data(8, seed=6) + 0.7 * data_noise(8, gaussian.SHAPE, 7)
    value = one_step_reward(gaussian.denoiser, gaussian.reward, states, 0.7)
    flat = states.reshape(8, gaussian.DIM) - gaussian.MEAN
    mean = gaussian.MEAN + flat @ gaussian.gain(torch.tensor([0.7], dtype=torch.float64))[0].T
    expected = -(mean @ gaussian.A.T - gaussian.B).square().sum(dim=1)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)


def test_stochastic_runs_do_not_depend_on_the_batching():
    states = gaussian.draw_data(6, seed=8) + 0.5 * data_noise(6, gaussian.SHAPE, 9)
    whole = sde_rewards(gaussian.denoiser, gaussian.reward, states, 0.5, steps=8, runs=3, seed=1)
    parts = torch.cat(
        [
            sde_rewards(
                gaussian.denoiser,
                gaussian.reward,
                states[first : first + 2],
                0.5,
                steps=8,
                runs=3,
                seed=1,
                first=first,
            )
            for first in (0, 2, 4)
        ]
    )
    assert whole.shape == (6, 3)
    torch.testing.assert_close(whole, parts, rtol=0, atol=0)
    assert whole.std(dim=1).min() > 0  # the runs differ
    other = sde_rewards(gaussian.denoiser, gaussian.reward, states, 0.5, steps=8, runs=3, seed=2)
    assert not torch.equal(whole, other)
