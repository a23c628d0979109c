"""The residual reward against closed-form residuals and the PDE's own operator."""

import pytest
import torch

import pirf.pdes
from pirf.errors import PirfError
from pirf.finetune import residual_loss, residual_reward, residual_scale
from pirf.pdes.normalisation import Normalisation

NORM = Normalisation(shift=(0.3, -0.1), scale=(2.0, 0.5))


def constant_source(c: float, resolution: int = 8) -> torch.Tensor:
    """Poisson fields with ``u = 0`` and ``a = c``: the residual is ``+-c`` everywhere."""
    fields = torch.zeros(1, 2, resolution, resolution, dtype=torch.float64)
    fields[:, 0] = c
    return fields


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_source_has_the_closed_form_reward(dtype):
    pde = pirf.pdes.get("poisson")
    samples = NORM.to_model(torch.cat([constant_source(1.5), constant_source(-2.0)]))
    mse = residual_reward(pde, NORM, samples, dtype=dtype)
    mae = residual_reward(pde, NORM, samples, norm="mae", dtype=dtype)
    assert mse.dtype == dtype and mse.shape == (2,)
    torch.testing.assert_close(mse, torch.tensor([-2.25, -4.0], dtype=dtype))
    torch.testing.assert_close(mae, torch.tensor([-1.5, -2.0], dtype=dtype))
    scaled = residual_loss(pde, NORM, samples, scale=4.0, dtype=dtype)
    torch.testing.assert_close(scaled, torch.tensor([2.25 / 4, 1.0], dtype=dtype))
    assert residual_scale(pde, NORM, samples) == pytest.approx(3.125)


def test_solver_output_has_a_vanishing_reward_and_a_finite_difference_gradient():
    pde = pirf.pdes.get("poisson")
    fields = pde.generate([torch.Generator().manual_seed(3)], 8)
    samples = NORM.to_model(fields)
    assert float(residual_loss(pde, NORM, samples, dtype=torch.float64)) < 1e-16
    perturbed = (samples + 0.01 * torch.randn_like(samples)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: residual_reward(pde, NORM, x, dtype=torch.float64), (perturbed,)
    )


def test_darcy_reward_clamps_the_coefficient_and_stays_differentiable():
    pde = pirf.pdes.get("darcy")
    norm = Normalisation(shift=(7.5, 0.0), scale=(9.0, 0.02))
    fields = pde.generate([torch.Generator().manual_seed(0)], 8)
    samples = norm.to_model(fields)
    # Admissible a: the reward is exactly the PDE's residual on the raw fields.
    expected = -pde.residual(fields).square().flatten(1).mean(dim=1)
    torch.testing.assert_close(residual_reward(pde, norm, samples, dtype=torch.float64), expected)
    # a pushed through zero somewhere: still finite, with finite gradients.
    broken = samples.clone()
    broken[:, 0, 2:5, 2:5] = -3.0
    broken.requires_grad_(True)
    reward = residual_reward(pde, norm, broken, dtype=torch.float64)
    reward.sum().backward()
    assert torch.isfinite(reward).all() and torch.isfinite(broken.grad).all()
    assert broken.grad[:, 0, 2:5, 2:5].abs().max() == 0  # clamped: no gradient through a
    assert broken.grad[:, 1].abs().max() > 0


def test_bad_arguments_are_user_errors():
    pde = pirf.pdes.get("poisson")
    samples = NORM.to_model(constant_source(1.0))
    with pytest.raises(PirfError, match="norm"):
        residual_reward(pde, NORM, samples, norm="max")
    with pytest.raises(PirfError, match="scale"):
        residual_reward(pde, NORM, samples, scale=0.0)
