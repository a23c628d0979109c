"""The residual reward against closed-form residuals and the PDE's own operator."""

import pytest
import torch

import pirf.pdes
from pirf.errors import PirfError
from pirf.finetune import residual_loss, residual_reward, residual_scale
from pirf.pdes.normalisation import Normalisation

NORM = Normalisation(shift=(0.3, -0.1), scale=(2.0, 0.5))


class PlainPDE(pirf.pdes.PDE):
    """A PDE with no preconditioner and no inputs: its residual is its one channel."""

    name, channels = "plain", ("u",)

    def residual(self, fields):
        return fields


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


# --------------------------------------------------------------------------- other norms


def _random_fields(name: str, resolution: int = 12, seed: int = 0) -> torch.Tensor:
    pde = pirf.pdes.get(name)
    generator = torch.Generator().manual_seed(seed)
    fields = pde.generate([generator], resolution)
    return fields + 0.01 * fields.std() * torch.randn(fields.shape, generator=generator,
                                                      dtype=fields.dtype)  # fmt: skip


@pytest.mark.parametrize("name", ["poisson", "helmholtz"])
def test_preconditioned_residual_is_the_error_against_a_re_solve(name):
    from pirf.pdes.dirichlet import solve_dirichlet

    pde = pirf.pdes.get(name)
    fields = _random_fields(name)
    fields[:, 1, [0, -1], :] = 0.0  # u on its boundary, as the solution has it
    fields[:, 1, :, [0, -1]] = 0.0
    error = fields[:, 1] - solve_dirichlet(fields[:, 0], pde.shift)
    preconditioned = pde.precondition(pde.residual(fields), fields)
    torch.testing.assert_close(preconditioned[:, 0], error[:, 1:-1, 1:-1], rtol=1e-9, atol=1e-12)


def test_darcy_preconditioner_inverts_a_constant_coefficient_exactly():
    from pirf.pdes.darcy import solve_darcy

    pde = pirf.pdes.get("darcy")
    fields = _random_fields("darcy")
    fields[:, 0] = 5.0  # constant a: the operator is -5 Laplacian_h, P itself
    fields[:, 1, [0, -1], :] = 0.0
    fields[:, 1, :, [0, -1]] = 0.0
    error = fields[:, 1] - solve_darcy(fields[:, 0], 1.0, rtol=1e-14)
    preconditioned = pde.precondition(pde.residual(fields), fields)
    torch.testing.assert_close(preconditioned[:, 0], error[:, 1:-1, 1:-1], rtol=1e-8, atol=1e-12)


def test_burgers_preconditioner_is_the_discrete_heat_propagation():
    # A residual cos(2 pi m x) constant in time: per mode the propagated error is the
    # geometric sum dt sum_{i <= j} q^i cos(2 pi m x) with q = exp(-nu (2 pi m)^2 dt).
    pde = pirf.pdes.get("burgers")
    levels, width, m = 16, 16, 3
    fields = torch.zeros(1, 1, levels + 2, width, dtype=torch.float64)
    dt = pde.grid.spacing(tuple(fields.shape[-2:]))[0]
    x = torch.arange(width, dtype=torch.float64) / width
    residual = torch.cos(2 * torch.pi * m * x).expand(1, 1, levels, width)
    q = torch.exp(torch.tensor(-pde.viscosity * (2 * torch.pi * m) ** 2 * dt))
    j = torch.arange(levels, dtype=torch.float64)
    expected = (dt * (1 - q ** (j + 1)) / (1 - q))[:, None] * residual[0, 0]
    torch.testing.assert_close(pde.precondition(residual, fields)[0, 0], expected)
    # zero mode: plain accumulation dt * (j + 1)
    flat = torch.ones(1, 1, levels, width, dtype=torch.float64)
    torch.testing.assert_close(pde.precondition(flat, fields)[0, 0, :, 0], dt * (j + 1))


def test_kolmogorov_preconditioner_divides_each_mode_by_the_linear_symbol():
    pde = pirf.pdes.get("kolmogorov")
    physics = pde._physics()
    size = 16
    x = torch.arange(size, dtype=torch.float64) * 2 * torch.pi / size
    residual = (torch.cos(3 * x)[:, None] * torch.cos(2 * x)[None, :]).expand(1, 1, size, size)
    symbol = 0.5 / physics["frame_dt"] + physics["drag"] + 13 / physics["reynolds"]
    fields = torch.zeros(1, 3, size, size, dtype=torch.float64)
    torch.testing.assert_close(pde.precondition(residual, fields), residual / symbol)


def test_multiscale_scales_see_smooth_and_rough_residuals_differently():
    from pirf.finetune.reward import pooled_scales

    smooth = torch.ones(1, 1, 16, 16)
    rough = torch.ones(1, 1, 16, 16)
    rough[..., ::2, :] *= -1  # +-1 stripes: gone after the first pooling
    assert [tuple(s.shape[-2:]) for s in pooled_scales(smooth)] == [(16, 16), (8, 8), (4, 4)]
    assert all(float(s.square().mean()) == 1.0 for s in pooled_scales(smooth))
    assert [float(s.square().mean()) for s in pooled_scales(rough)] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("reward", ["preconditioned", "mixed", "multiscale"])
@pytest.mark.parametrize("name", ["poisson", "darcy", "burgers"])
def test_calibrated_rewards_start_at_one_and_have_exact_gradients(reward, name):
    from pirf.finetune.reward import Reward

    pde = pirf.pdes.get(name)
    fields = torch.cat([_random_fields(name, seed=s) for s in range(3)])
    if name == "darcy":
        fields[:, 0] = fields[:, 0] + 0.3 * torch.randn_like(fields[:, 0])
    norm = Normalisation(
        shift=tuple(float(c.mean()) for c in fields.transpose(0, 1)),
        scale=tuple(float(c.std()) for c in fields.transpose(0, 1)),
    )
    samples = norm.to_model(fields)
    loss = Reward(pde, norm, reward=reward, dtype=torch.float64)
    scales = loss.calibrate(samples)
    assert all(value > 0 for value in scales.values())
    assert float(loss(samples).mean()) == pytest.approx(1.0, rel=1e-12)
    probe = samples[:1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x), (probe,), atol=1e-7, rtol=1e-5)


def test_snapped_reward_measures_what_evaluation_measures_and_passes_the_gradient():
    from pirf.finetune.reward import reward_terms

    pde = pirf.pdes.get("darcy")
    norm = Normalisation(shift=(7.5, 0.0), scale=(9.0, 0.02))
    fields = pde.generate([torch.Generator().manual_seed(1)], 8)
    noise = torch.randn(fields[:, 0].shape, generator=torch.Generator().manual_seed(2),
                        dtype=fields.dtype)  # fmt: skip
    fields[:, 0] += noise
    samples = norm.to_model(fields).requires_grad_(True)
    snapped = reward_terms(pde, norm, samples, dtype=torch.float64, snap=True)["residual"]
    expected = pde.residual(pde.snap(fields)).square().flatten(1).mean(dim=1)
    torch.testing.assert_close(snapped, expected)
    snapped.sum().backward()
    # straight through: the gradient is the one at the snapped fields
    at_snapped = norm.to_model(pde.snap(fields)).requires_grad_(True)
    reward_terms(pde, norm, at_snapped, dtype=torch.float64)["residual"].sum().backward()
    torch.testing.assert_close(samples.grad, at_snapped.grad)


def test_a_preconditioned_reward_needs_a_preconditioner():
    from pirf.finetune.reward import Reward

    with pytest.raises(PirfError, match="needs a preconditioner"):
        Reward(PlainPDE(), Normalisation((0.0,), (1.0,)), reward="preconditioned")
    with pytest.raises(PirfError, match="unknown reward 'l7'"):
        Reward(pirf.pdes.get("poisson"), NORM, reward="l7")


def test_mixed_weight_is_a_weighted_mean_of_the_scaled_terms():
    from pirf.finetune.reward import Reward

    pde = pirf.pdes.get("poisson")
    fields = torch.cat([_random_fields("poisson", seed=s) for s in range(2)])
    samples = NORM.to_model(fields)
    loss = Reward(pde, NORM, reward="mixed", weight=0.25, dtype=torch.float64)
    loss.scales = {"residual": 2.0, "preconditioned": 0.5}
    terms = loss.terms(samples)
    expected = (terms["residual"] / 2.0 + 0.25 * terms["preconditioned"] / 0.5) / 1.25
    torch.testing.assert_close(loss(samples), expected)
    with pytest.raises(PirfError, match="reward_weight must be positive"):
        Reward(pde, NORM, reward="mixed", weight=0.0)


def test_relative_reward_does_not_fall_when_a_sample_shrinks():
    from pirf.finetune.reward import reward_terms

    pde = pirf.pdes.get("poisson")
    fields = _random_fields("poisson")
    norm = Normalisation(shift=(0.0, 0.0), scale=(1.0, 0.01))
    samples = norm.to_model(fields)
    plain = reward_terms(pde, norm, samples, dtype=torch.float64)["residual"]
    shrunk = reward_terms(pde, norm, 0.5 * samples, dtype=torch.float64)["residual"]
    torch.testing.assert_close(shrunk, plain / 4)  # the residual is linear in the fields
    relative = reward_terms(pde, norm, samples, dtype=torch.float64, relative=True)["residual"]
    same = reward_terms(pde, norm, 0.5 * samples, dtype=torch.float64, relative=True)
    torch.testing.assert_close(same["residual"], relative)
    torch.testing.assert_close(relative, plain / samples.square().mean((1, 2, 3)))


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("poisson", lambda m: m[0].all() and not m[1].any()),
        ("darcy", lambda m: m[0].all() and not m[1].any()),
        ("burgers", lambda m: m[0, 0].all() and not m[0, 1:].any()),
        ("kolmogorov", lambda m: m[0].all() and not m[1:].any()),
    ],
)
def test_held_inputs_keep_the_reward_and_stop_its_gradient_at_the_inputs(name, inputs):
    from pirf.finetune.reward import reward_terms

    pde = pirf.pdes.get(name)
    mask = pde.input_mask(16, 16)
    assert mask.shape == (len(pde.channels), 16, 16) and inputs(mask)
    generator = torch.Generator().manual_seed(4)
    samples = torch.randn((2, len(pde.channels), 16, 16), generator=generator, dtype=torch.float64)
    norm = Normalisation((0.0,) * len(pde.channels), (1.0,) * len(pde.channels))
    if name == "darcy":
        samples[:, 0] = samples[:, 0].abs() + 1.0  # an admissible coefficient
    grads = {}
    for held in ("free", "held"):
        x = samples.clone().requires_grad_(True)
        loss = reward_terms(pde, norm, x, dtype=torch.float64, inputs=held)["residual"]
        loss.sum().backward()
        grads[held] = (loss.detach(), x.grad)
    torch.testing.assert_close(grads["held"][0], grads["free"][0])  # the same value
    free, held = grads["free"][1], grads["held"][1]
    assert free[:, mask].abs().max() > 0 and held[:, mask].abs().max() == 0
    torch.testing.assert_close(held[:, ~mask], free[:, ~mask])  # the solution's is untouched


def test_minimising_the_held_reward_re_solves_the_solution_from_the_inputs():
    """With the source held, the residual's minimiser over the source and the interior of
    the solution is the solver's solution of the source the sample already has: solver
    consistency goes to zero and the source stays exactly. Free, the source moves too."""
    import torch.nn.functional as F

    from pirf.finetune.reward import reward_terms

    pde = pirf.pdes.get("poisson")
    fields = _random_fields("poisson", resolution=10, seed=5)
    generator = torch.Generator().manual_seed(6)
    for channel in (0, 1):
        fields[:, channel] += 0.3 * fields[:, channel].std() * torch.randn(
            fields[:, channel].shape, generator=generator, dtype=fields.dtype
        )
    norm = Normalisation((0.0, 0.0), (1.0, 1.0))
    found = {}
    for held in ("free", "held"):
        source = fields[:, :1].clone().requires_grad_(True)
        interior = fields[:, 1:, 1:-1, 1:-1].clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS(
            [source, interior],
            max_iter=500,
            tolerance_grad=1e-20,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )

        def sample(source=source, interior=interior):
            return torch.cat([source, F.pad(interior, (1, 1, 1, 1))], dim=1)

        def closure(optimiser=optimiser, sample=sample, held=held):
            optimiser.zero_grad()
            terms = reward_terms(pde, norm, sample(), dtype=torch.float64, inputs=held)
            loss = terms["residual"].sum() / 1e-4  # a scale LBFGS's tolerances suit
            loss.backward()
            return loss

        optimiser.step(closure)
        found[held] = sample().detach()
    assert float(pde.consistency(fields).max()) > 0.1
    torch.testing.assert_close(found["held"][:, 0], fields[:, 0], rtol=0, atol=0)
    assert float(pde.consistency(found["held"]).max()) < 1e-6
    assert not torch.equal(found["free"][:, 0], fields[:, 0])  # free also edits the source


def test_held_inputs_need_a_pde_with_inputs():
    from pirf.finetune.reward import Reward

    with pytest.raises(PirfError, match="reward_inputs held needs inputs"):
        Reward(PlainPDE(), Normalisation((0.0,), (1.0,)), inputs="held")
    with pytest.raises(PirfError, match="unknown reward_inputs 'some'"):
        Reward(pirf.pdes.get("poisson"), NORM, inputs="some")
