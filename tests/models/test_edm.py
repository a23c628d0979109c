"""EDM preconditioning and loss against hand-computed and closed-form values."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pirf.errors import PirfError
from pirf.models import EDMDenoiser, edm_coefficients, edm_loss, loss_weight, preset_denoiser
from pirf.models.edm import sample_training_noise
from pirf.seeding import unit_generators

SD = 0.5


class Recorder(nn.Module):
    """Returns a fixed function of its inputs and remembers what it was given."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.seen = (x.clone(), labels.clone())
        return 3.0 * x + labels.reshape(-1, 1, 1, 1)


class GaussianOptimum(nn.Module):
    """The backbone whose denoiser is the exact posterior mean for data ~ N(0, s^2):
    D(y, sigma) = s^2 / (s^2 + sigma^2) y, solved for F through the preconditioning."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, scaled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sigma = (4 * labels).exp().reshape(-1, 1, 1, 1)
        total = sigma**2 + SD**2
        y = scaled * total.sqrt()
        target = self.s**2 / (self.s**2 + sigma**2) * y
        c_skip, c_out = SD**2 / total, sigma * SD / total.sqrt()
        return (target - c_skip * y) / c_out


def test_coefficients_match_hand_computed_values():
    c = edm_coefficients(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    # sigma = 0.5: total 0.5; sigma = 1: total 1.25; sigma = 2: total 4.25.
    expected = {
        "c_skip": [0.5, 0.2, 0.25 / 4.25],
        "c_out": [0.25 / math.sqrt(0.5), 0.5 / math.sqrt(1.25), 1.0 / math.sqrt(4.25)],
        "c_in": [1 / math.sqrt(0.5), 1 / math.sqrt(1.25), 1 / math.sqrt(4.25)],
        "c_noise": [math.log(0.5) / 4, 0.0, math.log(2.0) / 4],
    }
    for name, values in expected.items():
        got = getattr(c, name).reshape(-1)
        torch.testing.assert_close(got, torch.tensor(values, dtype=torch.float64))
    assert c.c_skip.shape == (3, 1, 1, 1) and c.c_noise.shape == (3,)


def test_loss_weight_is_inverse_square_of_c_out():
    sigma = torch.tensor([0.01, 0.3, 5.0], dtype=torch.float64)
    torch.testing.assert_close(loss_weight(sigma), edm_coefficients(sigma).c_out.reshape(-1) ** -2)
    torch.testing.assert_close(
        loss_weight(torch.tensor(1.0, dtype=torch.float64)), torch.tensor(5.0, dtype=torch.float64)
    )


def test_denoiser_feeds_scaled_input_and_noise_labels():
    backbone = Recorder()
    denoiser = EDMDenoiser(backbone)
    x = torch.randn(2, 3, 4, 4)
    sigma = torch.tensor([0.5, 2.0])
    out = denoiser(x, sigma)
    c = edm_coefficients(sigma)
    torch.testing.assert_close(backbone.seen[0], c.c_in * x)
    torch.testing.assert_close(backbone.seen[1], sigma.log() / 4)
    raw = 3.0 * c.c_in * x + c.c_noise.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(out, c.c_skip * x + c.c_out * raw)
    assert out.dtype == torch.float32


class Conditional(nn.Module):
    """A backbone with a keyword condition (zeros when absent), like PG-Diffusion's."""

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.seen = condition
        extra = 0.0 if condition is None else 2.0 * condition
        return 3.0 * x + labels.reshape(-1, 1, 1, 1) + extra


def test_conditioning_reaches_the_backbone_unscaled():
    backbone = Conditional()
    denoiser = EDMDenoiser(backbone)
    x, condition = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    sigma = torch.tensor([0.5, 2.0])
    out = denoiser(x, sigma, condition=condition, autocast=False)
    assert backbone.seen is condition
    c = edm_coefficients(sigma)
    raw = 3.0 * c.c_in * x + c.c_noise.reshape(-1, 1, 1, 1) + 2.0 * condition
    torch.testing.assert_close(out, c.c_skip * x + c.c_out * raw)
    # Without conditioning the backbone is called as an unconditional one.
    assert torch.equal(denoiser(x, sigma), denoiser(x, sigma, condition=None))
    assert backbone.seen is None


def test_scalar_and_batched_sigma_agree_and_bad_sigma_is_rejected():
    denoiser = EDMDenoiser(Recorder())
    x = torch.randn(3, 1, 4, 4)
    torch.testing.assert_close(denoiser(x, 0.7), denoiser(x, torch.full((3,), 0.7)))
    torch.testing.assert_close(denoiser(x, torch.tensor(0.7)), denoiser(x, 0.7))
    with pytest.raises(PirfError, match="one value per sample"):
        denoiser(x, torch.ones(2))


class HalfPrecision(nn.Module):
    """A backbone that answers in bfloat16, as one does under autocast."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16)


def test_output_is_float32_for_low_precision_and_float64_for_double():
    assert EDMDenoiser(Recorder())(torch.randn(1, 1, 4, 4).half(), 1.0).dtype == torch.float32
    assert EDMDenoiser(HalfPrecision())(torch.randn(1, 1, 4, 4), 1.0).dtype == torch.float32
    double = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    assert EDMDenoiser(Recorder())(double, 1.0).dtype == torch.float64


@pytest.mark.parametrize("backbone", ["unet", "wild"])
def test_denoiser_tends_to_identity_as_sigma_vanishes(backbone):
    torch.manual_seed(0)
    if backbone == "unet":
        denoiser = preset_denoiser("tiny", channels=2, resolution=16)
        raw_bound = 1e3  # the net is finite; the bound below only needs some constant
    else:
        # An adversarial backbone with large outputs: D -> x must still hold.
        denoiser = EDMDenoiser(Recorder())
        raw_bound = 1e3
    x = torch.randn(2, 2, 16, 16, dtype=torch.float64)
    if backbone == "unet":
        x = x.float()
    errors = []
    for sigma in (1e-2, 1e-4, 1e-6):
        with torch.no_grad():
            out = denoiser(x, sigma)
        error = (out - x).abs().max().item()
        # |D - x| <= (1 - c_skip)|x| + c_out |F| <= 4 sigma^2 |x| + sigma |F|.
        assert error <= 4 * sigma**2 * x.abs().max().item() + sigma * raw_bound
        errors.append(error)
    assert errors[2] < 1e-4 and errors[0] > errors[1] > errors[2]


def gaussian_expected_loss(s: float, sigma: np.ndarray) -> np.ndarray:
    """Closed form E[weight (D* - x)^2] for data N(0, s^2) and the optimal D*."""
    mse = s**2 * sigma**2 / (s**2 + sigma**2)
    return (sigma**2 + SD**2) / (sigma * SD) ** 2 * mse


@pytest.mark.parametrize("s", [0.5, 0.8])
def test_loss_of_optimal_gaussian_denoiser_at_fixed_sigma(s):
    generator = torch.Generator().manual_seed(1)
    denoiser = EDMDenoiser(GaussianOptimum(s))
    x = s * torch.randn(2048, 1, 8, 8, generator=generator, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    for sigma in (0.05, 0.5, 4.0):
        loss = edm_loss(denoiser, x, sigma=torch.tensor(sigma), noise=noise).mean().item()
        expected = gaussian_expected_loss(s, np.array(sigma)).item()
        assert loss == pytest.approx(expected, rel=0.02)
    if s == SD:  # for sigma_data = s every noise level has expected loss exactly one
        assert gaussian_expected_loss(s, np.array([0.01, 1.0, 80.0])) == pytest.approx(1.0)


def test_loss_over_lognormal_sigma_matches_quadrature():
    s, p_mean, p_std = 0.8, -1.2, 1.2
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # E over a standard normal
    expected = float(np.sum(weights * gaussian_expected_loss(s, np.exp(p_mean + p_std * nodes))))
    expected /= math.sqrt(2 * math.pi)
    generator = torch.Generator().manual_seed(2)
    x = s * torch.randn(8192, 1, 4, 4, generator=generator, dtype=torch.float64)
    loss = edm_loss(EDMDenoiser(GaussianOptimum(s)), x, generator=generator).mean().item()
    assert loss == pytest.approx(expected, rel=0.02)


def test_training_noise_is_seeded_per_sample():
    x = torch.zeros(4, 2, 4, 4)
    together = sample_training_noise(x, unit_generators(7, "train", range(4)))
    alone = [sample_training_noise(x[:1], unit_generators(7, "train", [i])) for i in range(4)]
    torch.testing.assert_close(together[0], torch.cat([a[0] for a in alone]), rtol=0, atol=0)
    torch.testing.assert_close(together[1], torch.cat([a[1] for a in alone]), rtol=0, atol=0)
    again = sample_training_noise(x, torch.Generator().manual_seed(3))
    repeat = sample_training_noise(x, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], repeat[0]) and torch.equal(again[1], repeat[1])
    # ln(sigma) is N(P_mean, P_std^2) and the noise standard normal.
    big = torch.zeros(20000, 1, 1, 1)
    sigma, noise = sample_training_noise(big, torch.Generator().manual_seed(4))
    assert sigma.log().mean().item() == pytest.approx(-1.2, abs=0.03)
    assert sigma.log().std().item() == pytest.approx(1.2, abs=0.03)
    assert noise.std().item() == pytest.approx(1.0, abs=0.02)


def test_loss_needs_both_sigma_and_noise():
    with pytest.raises(PirfError, match="both"):
        edm_loss(EDMDenoiser(Recorder()), torch.zeros(1, 1, 2, 2), sigma=torch.ones(1))
