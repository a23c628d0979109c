"""EDM's churned sampler as a step wrapper: the step written out, the reverse SDE's churn,
seeded per-trajectory noise, and the data variance it reaches on Gaussian data."""

from __future__ import annotations

import math

import pytest
import torch

from pirf.errors import PirfError
from pirf.sampling import (
    Churn,
    SamplingCost,
    churn_level,
    heun_step,
    initial_noise,
    integrate,
    karras_sigmas,
    sample,
    seeded_draws,
)
from pirf.seeding import unit_generators
from tests.sampling.gaussian import S, gaussian_denoiser


@pytest.mark.parametrize(("sigma", "sigma_next"), [(2.0, 1.5), (0.3, 0.1), (0.01, 0.0)])
def test_churn_level_adds_the_variance_the_step_removes(sigma, sigma_next):
    raised = churn_level(sigma, sigma_next)
    assert raised**2 - sigma**2 == pytest.approx(sigma**2 - sigma_next**2, rel=1e-12)
    gamma = raised / sigma - 1
    assert 0 < gamma <= math.sqrt(2) - 1 + 1e-15  # EDM's cap, reached on the step to 0
    if sigma_next == 0:
        assert gamma == pytest.approx(math.sqrt(2) - 1, rel=1e-15)


def test_a_churned_step_is_the_plain_step_from_the_raised_state():
    generators = unit_generators(0, 5, range(3))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    churned = Churn(seeded_draws(generators, 1))(heun_step, 0, 4, SamplingCost())
    out = churned(gaussian_denoiser, x, 1.0, 0.6)
    again = unit_generators(0, 5, range(3))
    noise = torch.stack([torch.randn((1, 4, 4), generator=g, dtype=torch.float64) for g in again])
    raised = churn_level(1.0, 0.6)
    expected = heun_step(gaussian_denoiser, x + math.sqrt(raised**2 - 1.0) * noise, raised, 0.6)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not Churn(seeded_draws(generators)).full_precision(0, 4)


def test_runs_of_one_state_draw_from_that_state_s_generator():
    draw = seeded_draws(unit_generators(0, 5, range(2)), repeats=3)
    noise = draw(torch.Size((6, 1, 2, 2)), torch.float32, torch.device("cpu"))
    assert noise.dtype == torch.float32 and noise.shape == (6, 1, 2, 2)
    alone = seeded_draws(unit_generators(0, 5, [1]), repeats=3)
    torch.testing.assert_close(noise[3:], alone(torch.Size((3, 1, 2, 2)), torch.float32, "cpu"))
    with pytest.raises(PirfError, match="noise streams"):
        draw(torch.Size((4, 1, 2, 2)), torch.float32, torch.device("cpu"))
    with pytest.raises(PirfError, match="runs per state"):
        seeded_draws([], repeats=0)


def test_churned_sampler_keeps_the_cost_and_reaches_the_data_variance():
    # From pure noise the reverse SDE samples the data, N(0, S^2) here: 2000 trajectories
    # of 64 pixels give a standard deviation known to about 0.1 %. The churned sampler's
    # bias shrinks with the steps (measured: +2.1 % at 40 steps, +0.8 % at 80, +0.1 % at
    # 160); 80 steps keep it within the 1.5 % allowed.
    n = 2000
    generators = unit_generators(3, 5, range(n))
    cost = SamplingCost()
    churn = Churn(seeded_draws(generators))
    x = sample(
        gaussian_denoiser,
        initial_noise(n, (1, 8, 8), 0),
        karras_sigmas(80),
        step_wrapper=churn,
        cost=cost,
    )
    assert cost.nfe == 159 and cost.backward == 0
    assert float(x.std()) == pytest.approx(S, rel=0.015)
    deterministic = sample(gaussian_denoiser, initial_noise(n, (1, 8, 8), 0), karras_sigmas(80))
    assert not torch.allclose(x, deterministic)


def test_integrate_takes_a_step_wrapper():
    x = initial_noise(4, (1, 4, 4), 0).double()
    sigmas = karras_sigmas(6, sigma_max=2.0)
    first = integrate(
        gaussian_denoiser,
        x,
        sigmas,
        step_wrapper=Churn(seeded_draws(unit_generators(1, 5, range(4)))),
    )
    again = integrate(
        gaussian_denoiser,
        x,
        sigmas,
        step_wrapper=Churn(seeded_draws(unit_generators(1, 5, range(4)))),
    )
    assert torch.equal(first, again)
    assert not torch.equal(first, integrate(gaussian_denoiser, x, sigmas))


def test_churned_steps_take_one_level_for_the_batch():
    churned = Churn(seeded_draws(unit_generators(0, 5, range(2))))(heun_step, 0, 2, SamplingCost())
    with pytest.raises(PirfError, match="one noise level"):
        churned(gaussian_denoiser, torch.zeros(2, 1, 2, 2), torch.ones(2), 0.5)
