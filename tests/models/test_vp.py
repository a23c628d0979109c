"""Epsilon-prediction networks of a discrete VP schedule as EDM denoisers (``pirf.models.vp``),
checked against the optimal denoiser of Gaussian data and against brute-force timesteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pirf.errors import PirfError
from pirf.models import epsilon_denoiser, load_checkpoint, save_checkpoint
from pirf.models.vp import vp_sigmas
from tests.models.toy_networks import GaussianEpsilon, linear_alphas_cumprod

SHAPE = (1, 4, 4)
S = 0.3
ACP = linear_alphas_cumprod()
SIGMAS = ((1 - ACP) / ACP).sqrt()


def x_batch(n: int) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def optimal(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The EDM-optimal denoiser of N(0, S^2) data: S^2 / (S^2 + sigma^2) x."""
    return S**2 / (S**2 + sigma.reshape(-1, 1, 1, 1) ** 2) * x


def test_the_exact_epsilon_predictor_becomes_the_optimal_denoiser_on_the_grid():
    model = epsilon_denoiser(GaussianEpsilon(S), ACP, shape=SHAPE)
    sigma = SIGMAS[[0, 1, 17, 250, 500, 998, 999]]
    x = x_batch(len(sigma))
    torch.testing.assert_close(model(x, sigma), optimal(x, sigma), rtol=1e-10, atol=1e-12)


def test_interpolated_timesteps_are_optimal_between_grid_points():
    model = epsilon_denoiser(GaussianEpsilon(S), ACP, shape=SHAPE, timesteps="interpolate")
    sigma = torch.exp(torch.linspace(SIGMAS[0].log(), SIGMAS[-1].log(), 41, dtype=torch.float64))
    x = x_batch(len(sigma))
    torch.testing.assert_close(model(x, sigma), optimal(x, sigma), rtol=1e-10, atol=1e-12)


def test_timesteps_against_brute_force():
    nearest = epsilon_denoiser(GaussianEpsilon(S), ACP, shape=SHAPE).backbone
    between = epsilon_denoiser(
        GaussianEpsilon(S), ACP, shape=SHAPE, timesteps="interpolate"
    ).backbone
    rng = np.random.default_rng(0)
    sigma = np.exp(rng.uniform(np.log(5e-3), np.log(200.0), 200))
    table = np.log(np.sqrt((1 - ACP.numpy()) / ACP.numpy()))
    expected = np.abs(np.log(sigma)[:, None] - table[None, :]).argmin(axis=1)
    got = nearest.timestep(torch.tensor(sigma))
    assert got.dtype == torch.int64 and np.array_equal(got.numpy(), expected)
    fractional = between.timestep(torch.tensor(sigma)).numpy()
    clamped = np.clip(np.log(sigma), table[0], table[-1])
    assert np.allclose(fractional, np.interp(clamped, table, np.arange(len(table))), atol=1e-9)
    assert torch.equal(
        between.timestep(SIGMAS[[3, 700]]), torch.tensor([3.0, 700.0], dtype=torch.float64)
    )


def test_vp_sigmas_and_bad_schedules():
    torch.testing.assert_close(vp_sigmas(ACP), SIGMAS)
    with pytest.raises(PirfError, match="must decrease strictly"):
        vp_sigmas(ACP.flip(0))
    with pytest.raises(PirfError, match="each in \\(0, 1\\)"):
        vp_sigmas([1.0, 0.5])
    with pytest.raises(PirfError, match="unknown timesteps 'round'"):
        epsilon_denoiser(GaussianEpsilon(S), ACP, shape=SHAPE, timesteps="round")


def test_an_epsilon_checkpoint_round_trips_bitwise(tmp_path):
    model = epsilon_denoiser(
        GaussianEpsilon(S), ACP, shape=SHAPE, timesteps="interpolate",
        factory="tests.models.toy_networks:GaussianEpsilon", config={"s": S},
    )  # fmt: skip
    info = save_checkpoint(tmp_path / "ckpt", model)
    assert info.architecture["backbone"] == "epsilon"
    loaded = load_checkpoint(tmp_path / "ckpt", allow_import=True).model
    sigma = torch.tensor([0.01, 0.5, 3.0, 70.0], dtype=torch.float64)
    x = x_batch(4)
    assert torch.equal(loaded.double()(x, sigma), model(x, sigma))
    assert loaded.backbone.timesteps == "interpolate"
