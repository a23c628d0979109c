"""DiffusionPDE guidance and CoCoGen correction against independent references: the plain
sampler (zero step), autograd through a hand-written Heun step and finite differences, a
quadratic loss whose guided trajectory and corrections are known in closed form, and
Gaussian data."""

import functools
import itertools
import math

import pytest
import torch

import pirf.pdes
from pirf.baselines.guidance import (
    METHODS,
    ZETA_GRID,
    guided_step,
    guided_step_count,
    residual_norm,
    select_setting,
    sweep_grid,
    wrappers,
)
from pirf.errors import PirfError
from pirf.evaluation import residual_per_sample
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import (
    FP32,
    Precision,
    SamplingCost,
    SamplingResult,
    generate,
    heun_step,
    karras_sigmas,
    sample,
)
from pirf.seeding import unit_generators
from tests.finetune.tiny import tiny_model, unit_noise
from tests.sampling.gaussian import S, gaussian_denoiser

POISSON = pirf.pdes.get("poisson")


@functools.cache
def poisson_fields() -> torch.Tensor:
    """A few exact Poisson solutions (float64) at 8 x 8."""
    return POISSON.generate(unit_generators(0, 0, range(4)), 8)


def poisson_loss(dtype: torch.dtype = torch.float64):
    normalisation = Normalisation.from_fields(poisson_fields())
    return functools.partial(residual_norm, POISSON, normalisation, dtype=dtype)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x.square().flatten(1).sum(dim=1)


def guided_sample(
    denoiser, noise, sigmas, loss_fn, *, method="heun", precision=FP32, **setting
) -> tuple[torch.Tensor, SamplingCost]:
    """One trajectory of the sampler with the wrappers of a guidance setting, and its cost."""
    chosen = wrappers(loss_fn, **setting)
    cost = SamplingCost()
    x = sample(
        denoiser,
        noise,
        sigmas,
        method=method,
        precision=precision,
        step_wrapper=chosen.get("step_wrapper"),
        cost=cost,
    )
    finish = chosen.get("finish")
    return (x if finish is None else finish(x, cost)), cost


# ------------------------------------------------------------------------------ the loss
def test_residual_norm_is_the_root_of_the_summed_squared_residual():
    normalisation = Normalisation.from_fields(poisson_fields())
    generator = torch.Generator().manual_seed(2)
    noisy = normalisation.to_model(poisson_fields())
    noisy = noisy + 0.1 * torch.randn(noisy.shape, generator=generator, dtype=noisy.dtype)
    mse, _, points = residual_per_sample(POISSON, normalisation.to_physical(noisy), snap=False)
    assert points == 36  # the interior nodes of an 8 x 8 Dirichlet grid
    reference = (points * mse).sqrt()
    exact = residual_norm(POISSON, normalisation, noisy, dtype=torch.float64)
    torch.testing.assert_close(exact, reference, rtol=1e-12, atol=0)
    single = residual_norm(POISSON, normalisation, noisy)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), reference, rtol=1e-5, atol=1e-6)
    # Exact solutions have (almost) zero residual and a finite gradient there.
    solutions = normalisation.to_model(poisson_fields()).requires_grad_(True)
    norm = residual_norm(POISSON, normalisation, solutions, dtype=torch.float64)
    assert float(norm.detach().max()) < 1e-10
    norm.sum().backward()
    assert torch.isfinite(solutions.grad).all()


def test_residual_norm_clamps_darcy_coefficient():
    darcy = pirf.pdes.get("darcy")
    normalisation = Normalisation(shift=(7.5, 0.0), scale=(9.0, 0.02))
    samples = torch.full((1, 2, 8, 8), -2.0, requires_grad=True)  # a = -10.5: inadmissible
    norm = residual_norm(darcy, normalisation, samples)
    norm.sum().backward()
    assert torch.isfinite(norm).all() and torch.isfinite(samples.grad).all()


# ------------------------------------------------------------------------------ one step
def explicit_heun(model, x_cur, sigma, sigma_next):
    """EDM's Heun step written out: the next state and the last denoised estimate."""
    batch = x_cur.shape[0]
    first = model(x_cur, torch.full((batch,), sigma, dtype=x_cur.dtype))
    slope = (x_cur - first) / sigma
    predicted = x_cur + (sigma_next - sigma) * slope
    if sigma_next == 0:
        return predicted, first
    second = model(predicted, torch.full((batch,), sigma_next, dtype=x_cur.dtype))
    slope_next = (predicted - second) / sigma_next
    return x_cur + (sigma_next - sigma) * 0.5 * (slope + slope_next), second


@pytest.mark.parametrize(("sigma", "sigma_next"), [(1.0, 0.6), (0.05, 0.0)])
def test_guidance_gradient_matches_autograd_and_finite_differences(sigma, sigma_next):
    model = tiny_model()
    loss_fn = poisson_loss()
    x = unit_noise() * sigma
    x_cur = x.clone().requires_grad_(True)
    x_next, estimate = explicit_heun(model, x_cur, sigma, sigma_next)
    (gradient,) = torch.autograd.grad(loss_fn(estimate).sum(), x_cur)

    def loss_at(state):
        with torch.no_grad():
            return float(loss_fn(explicit_heun(model, state, sigma, sigma_next)[1]).sum())

    step = 1e-6
    for entry in [(0, 0, 3, 4), (1, 1, 5, 2)]:
        plus, minus = x.clone(), x.clone()
        plus[entry] += step
        minus[entry] -= step
        difference = (loss_at(plus) - loss_at(minus)) / (2 * step)
        assert difference == pytest.approx(float(gradient[entry]), rel=1e-5)
    zeta = 0.01
    guided, evaluations = guided_step(heun_step, model, x, sigma, sigma_next, loss_fn, zeta)
    assert evaluations == (1 if sigma_next == 0 else 2)
    assert not guided.requires_grad
    expected = x_next.detach() - zeta * gradient
    torch.testing.assert_close(guided, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ sampling
def test_zero_step_reproduces_the_plain_sampler():
    model = tiny_model()
    noise = unit_noise()
    sigmas = karras_sigmas(5)
    plain = sample(model, noise, sigmas)
    for guide_fraction in (0.2, 1.0):
        samples, cost = guided_sample(
            model, noise, sigmas, poisson_loss(), zeta=0.0, guide_fraction=guide_fraction
        )
        torch.testing.assert_close(samples, plain, rtol=0, atol=1e-12)
        assert (cost.nfe, cost.backward, cost.guided_steps) == (9, 0, 0)
    unguided, _ = guided_sample(model, noise, sigmas, poisson_loss(), zeta=1e-3, guide_fraction=0)
    torch.testing.assert_close(unguided, plain, rtol=0, atol=1e-12)


def test_guided_trajectory_of_a_linear_denoiser_has_a_closed_form():
    # With D(x, sigma) = a(sigma) x every Heun step multiplies the state by a number, and
    # guidance on 0.5 ||x0_hat||^2 subtracts zeta e^2 from it, e the number that maps the
    # step's state to its last estimate x0_hat (that of the corrector, or D(x, sigma) on
    # the step to 0).
    sigmas, zeta, noise = karras_sigmas(10), 0.05, unit_noise(batch=2)

    def a(sigma: float) -> float:
        return S**2 / (S**2 + sigma**2)

    levels = [float(level) for level in sigmas]
    factor = levels[0]
    for index, (sigma, sigma_next) in enumerate(itertools.pairwise(levels)):
        predictor = 1 + (sigma_next - sigma) * (1 - a(sigma)) / sigma
        if sigma_next == 0:
            step, estimate = predictor, a(sigma)
        else:
            slopes = (1 - a(sigma)) / sigma + predictor * (1 - a(sigma_next)) / sigma_next
            step, estimate = 1 + (sigma_next - sigma) * 0.5 * slopes, a(sigma_next) * predictor
        if index >= 10 - guided_step_count(10, 0.2):
            step -= zeta * estimate**2
        factor *= step
    samples, cost = guided_sample(gaussian_denoiser, noise, sigmas, quadratic, zeta=zeta)
    torch.testing.assert_close(samples, noise * factor, rtol=1e-12, atol=0)
    assert (cost.guided_steps, cost.backward, cost.backward_nfe) == (2, 2, 3)


@pytest.mark.parametrize(("zeta", "correction_zeta", "factor"), [(0.1, None, 0.9), (0.1, 0.3, 0.7)])
def test_corrections_of_a_quadratic_loss_scale_the_sample(zeta, correction_zeta, factor):
    noise = unit_noise(batch=3)
    sigmas = karras_sigmas(10)
    kwargs = {"zeta": zeta, "correction_zeta": correction_zeta}
    base, _ = guided_sample(gaussian_denoiser, noise, sigmas, quadratic, **kwargs)
    for corrections in (1, 3, 5):
        samples, cost = guided_sample(
            gaussian_denoiser, noise, sigmas, quadratic, corrections=corrections, **kwargs
        )
        assert cost.corrections == corrections
        torch.testing.assert_close(samples, base * factor**corrections, rtol=1e-13, atol=0)


def test_guidance_lowers_the_loss_on_gaussian_data():
    noise = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    grid = torch.linspace(0, math.pi, 8)
    target = 0.5 * torch.sin(grid)[:, None] * torch.cos(grid)[None, :]

    def distance(x):
        return (x - target).square().flatten(1).sum(dim=1)

    sigmas = karras_sigmas(10)
    losses = {
        zeta: float(
            distance(guided_sample(gaussian_denoiser, noise, sigmas, distance, zeta=zeta)[0]).mean()
        )
        for zeta in (0.0, 0.05, 0.1)
    }
    assert losses[0.05] < 0.9 * losses[0.0]
    assert losses[0.1] < losses[0.05]


@pytest.mark.parametrize(
    ("steps", "fraction", "guided"),
    [(10, 0.2, 2), (40, 0.2, 8), (30, 0.1, 3), (7, 0.5, 4), (10, 0.0, 0), (10, 1.0, 10)],
)
def test_guided_step_count(steps, fraction, guided):
    assert guided_step_count(steps, fraction) == guided


def test_forward_and_backward_evaluations_are_counted():
    forward, backward = [], []

    def counting(x, sigma):
        out = gaussian_denoiser(x, sigma)
        forward.append(out.requires_grad)
        if out.requires_grad:
            out.register_hook(lambda grad: backward.append(1))
        return out

    noise = unit_noise(batch=2)
    _, cost = guided_sample(counting, noise, karras_sigmas(10), quadratic, zeta=0.1, corrections=3)
    assert cost.guided_steps == 2
    assert cost.nfe == len(forward) == 19  # 2N - 1: guidance reuses the step's evaluations
    assert forward.count(True) == 3  # step 8 (predictor + corrector) and step 9 (Euler to 0)
    assert cost.backward == 2  # one backward pass per guided step ...
    assert cost.backward_nfe == len(backward) == 3  # ... through these evaluations
    assert cost.corrections == 3  # corrections differentiate the loss, not the network
    # Euler steps have one evaluation each, so each backward pass goes through one.
    forward.clear()
    backward.clear()
    sigmas = karras_sigmas(10)
    _, cost = guided_sample(counting, noise, sigmas, quadratic, method="euler", zeta=0.1)
    assert (cost.nfe, cost.backward, cost.backward_nfe) == (10, 2, 2) == (10, 2, len(backward))


def test_guided_steps_run_in_float32_and_the_others_follow_the_precision():
    flags = []

    def recording(x, sigma, *, autocast=None):
        flags.append(autocast)
        return gaussian_denoiser(x, sigma)

    precision = Precision(bf16=True, fp32_steps=3)
    guided_sample(
        recording,
        unit_noise(),
        karras_sigmas(6),
        quadratic,
        zeta=0.1,
        guide_fraction=1 / 3,
        precision=precision,
    )
    assert flags == [True] * 6 + [False] * 5


# ------------------------------------------------------------------------------ many samples
def test_guided_generation_does_not_depend_on_micro_batching():
    model = tiny_model(dtype=torch.float32)
    loss_fn = poisson_loss(torch.float32)
    settings = wrappers(loss_fn, zeta=1e-3, guide_fraction=0.5, corrections=1)
    calls = []
    one = generate(
        model,
        3,
        (2, 8, 8),
        4,
        steps=4,
        batch_size=1,
        **settings,
        progress=lambda done, total: calls.append((done, total)),
    )
    three = generate(model, 3, (2, 8, 8), 4, steps=4, batch_size=3, **settings)
    assert isinstance(one, SamplingResult)
    assert one.samples.shape == (3, 2, 8, 8) and one.samples.dtype == torch.float32
    torch.testing.assert_close(one.samples, three.samples, rtol=1e-4, atol=1e-4)
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert (one.nfe_per_sample, one.backward_per_sample, one.backward_nfe_per_sample) == (7, 2, 3)
    assert (one.guided_steps, one.corrections, one.method, one.steps) == (2, 1, "heun", 4)
    plain = generate(model, 3, (2, 8, 8), 4, steps=4, batch_size=3, **wrappers(loss_fn, zeta=0.0))
    assert (plain.nfe_per_sample, plain.backward_per_sample, plain.corrections) == (7, 0, 0)
    assert not torch.allclose(plain.samples, three.samples, atol=1e-6)
    before, after = loss_fn(plain.samples).mean(), loss_fn(three.samples).mean()
    assert after < before


# ------------------------------------------------------------------------------ sweeps
def test_sweep_grids():
    diffusionpde = sweep_grid("diffusionpde")
    assert [s["zeta"] for s in diffusionpde] == list(ZETA_GRID) == [0, 5e-6, 1e-5, 1e-4, 1e-3]
    assert all(s["guide_fraction"] == 0.2 and s["corrections"] == 0 for s in diffusionpde)
    cocogen = sweep_grid("cocogen")
    assert len(cocogen) == 1 + 4 * 3 and cocogen[0]["zeta"] == 0
    assert {s["corrections"] for s in cocogen} == {1, 3, 5}
    assert set(METHODS) == {"diffusionpde", "cocogen"}
    with pytest.raises(PirfError, match="unknown baseline"):
        sweep_grid("pidm")


def test_select_setting_picks_the_lowest_finite_score():
    grid = [{"zeta": z} for z in (0.0, 1.0, 2.0, 3.0, 4.0)]
    values = {0.0: 3.0, 1.0: float("nan"), 2.0: 1.0, 3.0: 1.0, 4.0: float("-inf")}
    best, scores = select_setting(lambda s: values[s["zeta"]], grid)
    assert best == {"zeta": 2.0}
    assert scores[2] == 1.0 and math.isnan(scores[1]) and len(scores) == 5
    with pytest.raises(PirfError, match="NaN or inf"):
        select_setting(lambda s: float("nan"), grid)
    with pytest.raises(PirfError, match="empty"):
        select_setting(lambda s: 0.0, [])


@pytest.mark.parametrize(
    "bad",
    [
        {"zeta": -1e-3},
        {"zeta": float("nan")},
        {"zeta": 0.1, "guide_fraction": 1.5},
        {"zeta": 0.1, "guide_fraction": -0.1},
        {"zeta": 0.1, "corrections": -1},
        {"zeta": 0.1, "corrections": 1.5},
        {"zeta": 0.1, "correction_zeta": -1.0},
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(PirfError):
        wrappers(quadratic, **bad)


def test_a_loss_must_give_one_value_per_sample():
    with pytest.raises(PirfError, match="one value per sample"):
        guided_sample(
            gaussian_denoiser, unit_noise(), karras_sigmas(4), lambda x: x.sum(), zeta=0.1
        )
