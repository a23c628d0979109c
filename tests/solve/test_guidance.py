"""Observation guidance against problems with a known answer.

With every value observed, guidance at every step pulls the sample onto the observations:
the final misfit must fall monotonically as the step grows towards 1 and vanish at 1,
where the last step removes the whole misfit of its estimate (the denoiser at sigma_min is
the identity up to O(sigma_min), module docstring of pirf.solve.guidance).
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

import pirf.pdes
from pirf.baselines.guidance import guided_step, residual_norm
from pirf.errors import PirfError
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import SamplingCost, heun_step, initial_noise, karras_sigmas, sample
from pirf.seeding import unit_generators
from pirf.solve.guidance import SolverGuidance, observation_loss
from tests.finetune.tiny import tiny_model
from tests.sampling.gaussian import gaussian_denoiser

ZETAS = (0.0, 0.1, 0.3, 0.6, 1.0)


def observations(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return 0.5 * torch.randn(4, 2, 8, 8, generator=generator, dtype=dtype)


def misfit(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """The largest relative misfit over samples, on the observed values."""
    difference = ((x - y) * mask).flatten(1).norm(dim=1)
    return float((difference / (y * mask).flatten(1).norm(dim=1)).max())


def guided(denoiser, noise, y, mask, zeta, steps=10, **terms):
    cost = SamplingCost()
    guidance = SolverGuidance(observation_loss(mask, y), zeta, **terms)
    x = sample(denoiser, noise, karras_sigmas(steps), step_wrapper=guidance, cost=cost)
    return x, cost


@pytest.mark.parametrize(
    ("name", "dtype", "tolerance"),
    [
        # Gaussian data, exact denoiser in float64: the remaining misfit at zeta = 1 is the
        # estimate's deviation from the identity at sigma_min, (sigma_min / s)^2 ~ 2e-5, raised
        # to the power of the late steps' contraction (measured: 1e-8).
        ("gaussian", torch.float64, 1e-6),
        # A tiny U-Net with random weights in float32: D(x, sigma_min) = c_skip x + c_out F
        # with c_out ~ sigma_min, so the last step leaves O(1e-3 |dF/dx|) of the misfit before
        # it, itself already reduced by the earlier steps (measured: 9e-7); 1e-4 leaves room
        # for float32 rounding.
        ("unet", torch.float32, 1e-4),
    ],
)
def test_full_observation_error_falls_to_zero_as_guidance_grows(name, dtype, tolerance):
    denoiser = gaussian_denoiser if name == "gaussian" else tiny_model(dtype=torch.float32)
    noise = initial_noise(4, (2, 8, 8), 0).to(dtype)
    y = observations(dtype)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    errors = [misfit(guided(denoiser, noise, y, mask, zeta)[0], y, mask) for zeta in ZETAS]
    assert errors[0] > 0.5  # unguided samples ignore the observations
    assert all(later < earlier for earlier, later in itertools.pairwise(errors))
    assert errors[-1] < tolerance


def test_partial_observation_is_matched_where_observed():
    noise = initial_noise(4, (2, 8, 8), 0).double()
    y = observations(torch.float64)
    generator = torch.Generator().manual_seed(4)
    mask = torch.rand(2, 8, 8, generator=generator) < 0.3
    x, cost = guided(gaussian_denoiser, noise, y, mask, 1.0)
    assert misfit(x, y, mask) < 1e-6
    free = misfit(x, y, ~mask)
    assert free > 0.5  # the rest is the prior's business (here: independent pixels)
    assert (cost.guided_steps, cost.backward, cost.nfe) == (10, 10, 19)


def test_a_guided_step_is_diffusionpde_s_with_the_weighted_loss():
    pde = pirf.pdes.get("poisson")
    fields = pde.generate(unit_generators(0, 0, range(4)), 8)
    normalisation = Normalisation.from_fields(fields)
    residual = functools.partial(residual_norm, pde, normalisation, dtype=torch.float64)
    model = tiny_model()
    y = observations(torch.float64)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    observe = observation_loss(mask, y)
    guidance = SolverGuidance(observe, 0.3, residual, 0.02, pde_fraction=0.5)
    x = initial_noise(4, (2, 8, 8), 1).double() * 0.5
    for index, with_pde in ((0, False), (3, True)):
        step = guidance(heun_step, index, 4, SamplingCost())
        out = step(model, x, 0.5, 0.3)

        def loss(z, with_pde=with_pde):
            return 0.3 * observe(z) + (0.02 * residual(z) if with_pde else 0)

        expected, _ = guided_step(heun_step, model, x, 0.5, 0.3, loss, 1.0)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert [guidance.residual_guides(i, 10) for i in range(10)] == [False] * 5 + [True] * 5
    assert all(guidance.full_precision(i, 10) for i in range(10))


def test_pde_guidance_lowers_the_residual():
    pde = pirf.pdes.get("poisson")
    fields = pde.generate(unit_generators(0, 0, range(4)), 8)
    normalisation = Normalisation.from_fields(fields)
    residual = functools.partial(residual_norm, pde, normalisation, dtype=torch.float64)
    noise = initial_noise(4, (2, 8, 8), 0).double()
    y = normalisation.to_model(fields)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[1] = True  # u observed: the inverse problem
    plain, _ = guided(gaussian_denoiser, noise, y, mask, 0.5)
    with_pde, _ = guided(gaussian_denoiser, noise, y, mask, 0.5, residual=residual, zeta_pde=0.3)
    # Two guided steps of 10 (the last 20 %): measured 0.69 of the plain residual.
    assert float(residual(with_pde).mean()) < 0.8 * float(residual(plain).mean())


def test_zero_steps_leave_the_sampler_alone():
    noise = initial_noise(2, (2, 8, 8), 0).double()
    y = observations(torch.float64)[:2]
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    x, cost = guided(gaussian_denoiser, noise, y, mask, 0.0, residual=lambda z: z.sum((1, 2, 3)))
    torch.testing.assert_close(x, sample(gaussian_denoiser, noise, karras_sigmas(10)))
    assert cost.guided_steps == 0 and cost.backward == 0


@pytest.mark.parametrize(
    "bad", [{"zeta_obs": -1.0}, {"zeta_pde": float("nan")}, {"pde_fraction": 2}]
)
def test_bad_steps_are_refused(bad):
    settings = {"zeta_obs": 1.0, "zeta_pde": 0.0, "pde_fraction": 0.2, **bad}
    with pytest.raises(PirfError):
        SolverGuidance(lambda x: x.sum((1, 2, 3)), **settings)


def test_observations_must_match_the_batch():
    loss = observation_loss(torch.ones(2, 8, 8, dtype=torch.bool), observations(torch.float64))
    with pytest.raises(PirfError, match="observations are for 4 samples"):
        loss(torch.zeros(2, 2, 8, 8, dtype=torch.float64))
