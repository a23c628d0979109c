"""Samplers against the exact probability-flow ODE of Gaussian data (see gaussian.py).

EDM's Heun takes Euler's step on the last step, from ``sigma_min`` to 0, where the ODE's
slope ``(x - D) / sigma`` is undefined. The convergence orders are therefore measured on
the state at ``sigma_min`` (the integration over ``[sigma_min, sigma_max]``), and the last
step is checked on its own: it lands on ``D(x, sigma_min)``, whose bias against the exact
``x(0)`` does not depend on ``N`` and is known in closed form.
"""

import math

import numpy as np
import pytest
import torch
from torch.utils.checkpoint import checkpoint

from pirf.errors import PirfError
from pirf.sampling import (
    NetworkCall,
    euler_step,
    heun_step,
    integrate,
    karras_sigmas,
    network_evaluations,
    sample,
)
from tests.sampling.gaussian import S, exact, gaussian_denoiser

START = torch.tensor([1.0, -0.3, 0.02], dtype=torch.float64).view(3, 1, 1, 1)


def error_at_sigma_min(method: str, steps: int) -> float:
    """Max error of the state at sigma_min relative to the initial state (float64)."""
    sigmas = karras_sigmas(steps)
    trajectory = sample(gaussian_denoiser, START, sigmas, method=method, return_trajectory=True)
    reference = exact(START * 80.0, 80.0, float(sigmas[-2]))
    return float((trajectory.states[-2] - reference).abs().max()) / 80.0


@pytest.mark.parametrize(("method", "order"), [("heun", 2.0), ("euler", 1.0)])
def test_convergence_order_on_gaussian_data(method, order):
    counts = np.array([32, 64, 128, 256])
    errors = np.array([error_at_sigma_min(method, int(n)) for n in counts])
    fitted = -np.polyfit(np.log(counts), np.log(errors), 1)[0]
    assert abs(fitted - order) < 0.1, (errors, fitted)
    assert all(np.diff(errors) < 0)


def test_heun_beats_euler_at_equal_cost():
    # N Heun steps cost 2N - 1 evaluations; Euler with 2N - 1 steps is less accurate, and
    # the more so the larger N (measured ratios: 1.6 at N = 20, 3.7 at N = 40).
    assert error_at_sigma_min("heun", 20) < 0.8 * error_at_sigma_min("euler", 39)
    assert error_at_sigma_min("heun", 40) < 0.4 * error_at_sigma_min("euler", 79)


@pytest.mark.parametrize("method", ["heun", "euler"])
def test_last_step_is_euler_onto_the_denoised_state(method):
    sigmas = karras_sigmas(12)
    sigma_min = float(sigmas[-2])
    trajectory = sample(gaussian_denoiser, START, sigmas, method=method, return_trajectory=True)
    last = trajectory.states[-2]
    torch.testing.assert_close(trajectory.final, gaussian_denoiser(last, sigma_min))
    # From the exact state at sigma_min the last step misses x(0) by a factor
    # s^2 / (s^2 + sigma_min^2) / (s / sqrt(s^2 + sigma_min^2)), whatever N: a fixed bias.
    exact_min = exact(START, 80.0, sigma_min)
    landed = heun_step(gaussian_denoiser, exact_min, sigma_min, 0.0)
    bias = S / math.sqrt(S**2 + sigma_min**2)
    torch.testing.assert_close(landed, exact(START, 80.0, 0.0) * bias, rtol=1e-14, atol=0)


TOPS = (80.0, 5.0, 0.5)


def per_sample_run(step, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three samples, each from its own ``sigma_max`` (:data:`TOPS`) down its own Karras
    schedule to ``sigma_min``, stepped together with per-sample levels: the final states
    and the schedules ``(steps + 1, 3)``."""
    schedules = torch.stack([karras_sigmas(steps, sigma_max=top) for top in TOPS], dim=1)
    x = START * torch.tensor(TOPS, dtype=torch.float64).view(3, 1, 1, 1)
    for index in range(steps - 1):
        x = step(gaussian_denoiser, x, schedules[index], schedules[index + 1])
    return x, schedules


def per_sample_errors(step, steps: int) -> np.ndarray:
    """Error of each sample's state at ``sigma_min`` relative to the exact ODE solution."""
    x, schedules = per_sample_run(step, steps)
    errors = []
    for row, top in enumerate(TOPS):
        reference = exact(START[row] * top, top, float(schedules[steps - 1, row]))
        errors.append(float(((x[row] - reference) / reference).abs().max()))
    return np.array(errors)


@pytest.mark.parametrize(("step", "order"), [(heun_step, 2.0), (euler_step, 1.0)])
def test_per_sample_levels_follow_each_samples_own_ode(step, order):
    # Doubling the steps divides every sample's error by 2^order (measured at 64 -> 128:
    # 4.1-4.1 for Heun, 2.0-2.0 for Euler), so each sample is on its own schedule.
    ratios = per_sample_errors(step, 64) / per_sample_errors(step, 128)
    assert np.all(np.abs(np.log2(ratios) - order) < 0.1), ratios
    # The last step, to 0 for every sample, is Euler's: it lands on D(x, sigma_min).
    x, schedules = per_sample_run(step, 8)
    landed = step(gaussian_denoiser, x, schedules[-2], schedules[-1])
    torch.testing.assert_close(landed, gaussian_denoiser(x, schedules[-2]), rtol=1e-14, atol=0)


@pytest.mark.parametrize("step", [heun_step, euler_step])
def test_per_sample_levels_are_the_number_levels_of_each_sample(step):
    schedules = torch.stack([karras_sigmas(4, sigma_max=top) for top in TOPS], dim=1)
    x = START * torch.tensor(TOPS, dtype=torch.float64).view(3, 1, 1, 1)
    for index in range(4):
        level, following = schedules[index], schedules[index + 1]
        stepped = step(gaussian_denoiser, x, level, following)
        for row in range(3):
            alone = step(
                gaussian_denoiser, x[row : row + 1], float(level[row]), float(following[row])
            )
            assert torch.equal(stepped[row : row + 1], alone)
        x = stepped
    with pytest.raises(PirfError, match="every sample of the batch or for none"):
        heun_step(gaussian_denoiser, x, schedules[1], torch.tensor([0.0, 0.0, 0.001]))


def test_network_evaluations_are_counted():
    calls = []

    def counting(x, sigma):
        calls.append(sigma.shape)
        return gaussian_denoiser(x, sigma)

    noise = torch.zeros(2, 1, 2, 2)
    for method, steps in (("heun", 7), ("euler", 7), ("heun", 1), ("euler", 1)):
        calls.clear()
        sigmas = karras_sigmas(steps)
        trajectory = sample(counting, noise, sigmas, method=method, return_trajectory=True)
        assert len(calls) == trajectory.nfe == network_evaluations(method, steps)
        assert set(calls) == {torch.Size([2])}  # sigma is handed over as a (B,) tensor
    assert network_evaluations("heun", 20) == 39 and network_evaluations("euler", 20) == 20
    # A Heun step that does not end at 0 always corrects: two evaluations.
    counter = NetworkCall(gaussian_denoiser)
    heun_step(counter, noise, 2.0, 1.0)
    euler_step(counter, noise, 2.0, 1.0)
    assert counter.calls == 3
    with pytest.raises(PirfError, match="unknown sampler"):
        network_evaluations("dpm", 3)
    with pytest.raises(PirfError, match="unknown sampler"):
        sample(gaussian_denoiser, noise, karras_sigmas(2), method="dpm")


def test_trajectory_and_callback():
    sigmas = karras_sigmas(6)
    noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = []
    trajectory = sample(
        gaussian_denoiser, noise, sigmas, callback=seen.append, return_trajectory=True
    )
    assert len(trajectory.states) == 7 and trajectory.sigmas == sigmas.tolist()
    assert torch.equal(trajectory.states[0], noise * 80.0)
    assert torch.equal(trajectory.final, sample(gaussian_denoiser, noise, sigmas))
    for index, (state, sigma) in enumerate(zip(trajectory.states, sigmas.tolist(), strict=True)):
        assert state.dtype == torch.float32 and not state.requires_grad
        if index:
            before = trajectory.states[index - 1]
            step = heun_step(gaussian_denoiser, before, float(sigmas[index - 1]), sigma)
            assert torch.equal(state, step)
            info = seen[index - 1]
            assert (info.index, info.steps, info.sigma_next) == (index - 1, 6, sigma)
            assert torch.equal(info.x, state) and not info.low_precision
    assert [info.nfe for info in seen] == [2, 4, 6, 8, 10, 11]


def test_state_is_float32_for_low_precision_noise_and_float64_kept():
    sigmas = karras_sigmas(3)
    for dtype, expected in ((torch.bfloat16, torch.float32), (torch.float64, torch.float64)):
        out = sample(gaussian_denoiser, torch.ones(1, 1, 2, 2, dtype=dtype), sigmas)
        assert out.dtype == expected


def test_integrate_pieces_make_the_whole_trajectory():
    sigmas = karras_sigmas(8)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    whole = sample(gaussian_denoiser, noise, sigmas)
    middle = integrate(gaussian_denoiser, noise * 80.0, sigmas, stop=5)
    steps_taken = []
    end = integrate(
        gaussian_denoiser, middle, sigmas, start=5, callback=lambda i: steps_taken.append(i.index)
    )
    assert torch.equal(end, whole) and steps_taken == [5, 6, 7]
    with pytest.raises(PirfError, match="start <= stop"):
        integrate(gaussian_denoiser, noise, sigmas, start=6, stop=3)


class ScaledGaussian(torch.nn.Module):
    """The Gaussian denoiser with a trainable data scale ``s``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale, dtype=torch.float64))

    def forward(self, x, sigma):
        sigma = sigma.reshape(-1, 1, 1, 1)
        return self.scale**2 / (self.scale**2 + sigma**2) * x


def test_gradient_through_the_last_steps_matches_finite_differences():
    # The fine-tuning pattern: steps before the last K without gradient, the last K with.
    sigmas, K = karras_sigmas(10), 2
    noise = torch.randn(4, 1, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    model = ScaledGaussian(0.7)
    start = integrate(model, noise * 80.0, sigmas, stop=10 - K)
    assert not start.requires_grad
    loss = integrate(model, start, sigmas, start=10 - K, grad=True).square().sum()
    (gradient,) = torch.autograd.grad(loss, model.scale)

    def truncated_loss(scale):
        return integrate(ScaledGaussian(scale), start, sigmas, start=10 - K).square().sum()

    h = 1e-6
    finite = (truncated_loss(0.7 + h) - truncated_loss(0.7 - h)) / (2 * h)
    assert float(gradient) == pytest.approx(float(finite), rel=1e-6)
    # Gradient checkpointing around the step functions gives the same gradient.
    x = start
    for i in range(10 - K, 10):
        levels = float(sigmas[i]), float(sigmas[i + 1])
        x = checkpoint(heun_step, model, x, *levels, use_reentrant=False)
    (checkpointed,) = torch.autograd.grad(x.square().sum(), model.scale)
    torch.testing.assert_close(checkpointed, gradient)
