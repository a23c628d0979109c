"""Samplers against the exact probability-flow ODE of Gaussian data.

For data ``N(0, s^2 I)`` the ideal denoiser is ``D(x, sigma) = s^2 / (s^2 + sigma^2) x`` and
the ODE ``dx/dsigma = sigma x / (s^2 + sigma^2)`` has the solution
``x(sigma) = x(sigma_0) sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2))``: an independent
reference for the order of each step function.
"""

import itertools
import math

import pytest
import torch

from pirf.errors import PirfError
from pirf.sampling import (
    Precision,
    generate,
    initial_noise,
    karras_sigmas,
    network_evaluations,
    sample,
)

S = 0.5


def gaussian_denoiser(x, sigma):
    sigma = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return S**2 / (S**2 + sigma**2) * x


def exact(x0, sigma0, sigma):
    return x0 * math.sqrt((S**2 + sigma**2) / (S**2 + sigma0**2))


def penultimate_error(method, steps):
    """Error of the state at sigma_min (before the final step to 0), float64 throughout."""
    sigmas = karras_sigmas(steps)
    x0 = torch.ones(1, 1, 1, 1, dtype=torch.float64)

    def denoiser(x, sigma):
        return gaussian_denoiser(x.double(), sigma.double())

    _, trajectory = sample(denoiser, x0, sigmas, method=method, return_trajectory=True)
    reference = exact(x0 * float(sigmas[0]), float(sigmas[0]), float(sigmas[-2]))
    return float((trajectory[-2].double() - reference).abs().max())


def test_schedule_matches_its_formula():
    sigmas = karras_sigmas(5, 0.002, 80.0, 7.0)
    assert sigmas.dtype == torch.float64 and len(sigmas) == 6
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[4].item() == pytest.approx(0.002)
    assert sigmas[-1].item() == 0.0 and bool((sigmas[:-1].diff() < 0).all())
    middle = (80.0 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert sigmas[2].item() == pytest.approx(middle, rel=1e-12)
    with pytest.raises(PirfError, match="positive integer"):
        karras_sigmas(0)


@pytest.mark.parametrize(("method", "order"), [("heun", 2.0), ("euler", 1.0)])
def test_convergence_order_on_gaussian_data(method, order):
    counts = [16, 32, 64, 128]
    errors = [penultimate_error(method, n) for n in counts]
    rates = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    # Asymptotic rates on the non-uniform Karras grid: within 0.15 of the formal order.
    assert all(abs(rate - order) < 0.15 for rate in rates[1:]), (errors, rates)


def test_last_step_lands_on_the_denoised_state():
    sigmas = karras_sigmas(8)
    noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    final, trajectory = sample(gaussian_denoiser, noise, sigmas, return_trajectory=True)
    last = trajectory[-2]
    expected = gaussian_denoiser(last, torch.full((3,), float(sigmas[-2])))
    torch.testing.assert_close(final, expected)
    assert len(trajectory) == 9


def test_network_evaluations_are_counted():
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return gaussian_denoiser(x, sigma)

    noise = torch.zeros(2, 1, 2, 2)
    for method, steps in (("heun", 7), ("euler", 7), ("heun", 1)):
        calls.clear()
        sample(counting, noise, karras_sigmas(steps), method=method)
        assert len(calls) == network_evaluations(method, steps)
    assert network_evaluations("heun", 20) == 39
    with pytest.raises(PirfError, match="unknown sampler"):
        network_evaluations("dpm", 3)


def test_precision_policy_keeps_the_last_steps_in_float32():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, sigma, autocast=None):
            seen.append((float(sigma[0]), autocast))
            return gaussian_denoiser(x, sigma)

    sigmas = karras_sigmas(5)
    sample(Recorder(), torch.zeros(1, 1, 2, 2), sigmas, precision=Precision(True, 2))
    # Heun evaluates twice per step, once on the last: steps 0-2 (six calls) in bf16, then
    # steps 3 and 4 (three calls) in float32.
    assert [flag for _, flag in seen] == [True] * 6 + [False] * 3
    assert Precision(False).low_precision(0, 5) is False


def test_noise_and_samples_do_not_depend_on_micro_batching():
    torch.testing.assert_close(
        initial_noise(5, (2, 4, 4), seed=3),
        torch.cat([initial_noise(2, (2, 4, 4), 3), initial_noise(3, (2, 4, 4), 3, start=2)]),
        rtol=0,
        atol=0,
    )
    whole = generate(gaussian_denoiser, 7, (1, 4, 4), seed=1, steps=6, batch_size=7)
    pieces = generate(gaussian_denoiser, 7, (1, 4, 4), seed=1, steps=6, batch_size=3)
    assert torch.equal(whole.samples, pieces.samples)
    other_seed = generate(gaussian_denoiser, 7, (1, 4, 4), seed=2, steps=6)
    assert not torch.equal(whole.samples, other_seed.samples)
    assert whole.nfe_per_sample == 11 and whole.samples.shape == (7, 1, 4, 4)


def test_generated_gaussian_samples_have_the_data_variance():
    result = generate(gaussian_denoiser, 256, (1, 8, 8), seed=0, steps=80)
    std = float(result.samples.std())
    # 16,384 values: the standard error of the std is about 0.6 %; the 80-step Heun bias
    # is 0.2 % (test_convergence_order_on_gaussian_data measures it).
    assert std == pytest.approx(S, rel=0.025)


def test_bad_requests_fail_clearly():
    with pytest.raises(PirfError, match="positive integer"):
        generate(gaussian_denoiser, 0, (1, 4, 4), seed=0)
    with pytest.raises(PirfError, match="batch size"):
        generate(gaussian_denoiser, 2, (1, 4, 4), seed=0, batch_size=0)
