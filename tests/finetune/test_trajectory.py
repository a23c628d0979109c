"""Truncated differentiable trajectories against explicitly unrolled references."""

import copy

import pytest
import torch

from pirf.errors import PirfError
from pirf.finetune import select_trainable, truncated_trajectory
from pirf.sampling import Precision, integrate, karras_sigmas, sample
from tests.finetune.tiny import grads, objective, tiny_model, unit_noise

N = 4
K = 2


def reference_heun(model, x, sigma, sigma_next):
    """EDM's Heun step, written out independently of pirf.sampling."""
    level = torch.full((x.shape[0],), sigma, dtype=x.dtype)
    slope = (x - model(x, level)) / sigma
    euler = x + (sigma_next - sigma) * slope
    if sigma_next == 0:
        return euler
    level_next = torch.full((x.shape[0],), sigma_next, dtype=x.dtype)
    slope_next = (euler - model(euler, level_next)) / sigma_next
    return x + (sigma_next - sigma) * 0.5 * (slope + slope_next)


def unrolled_draft(model, noise, sigmas, k):
    """DRaFT-K by hand: a plain loop, state detached at the window start."""
    levels = [float(s) for s in sigmas]
    x = noise * levels[0]
    with torch.no_grad():
        for i in range(N - k):
            x = reference_heun(model, x, levels[i], levels[i + 1])
    x = x.detach()
    for i in range(N - k, N):
        x = reference_heun(model, x, levels[i], levels[i + 1])
    return x


def test_draft_gradient_equals_unrolled_reference():
    model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    run = truncated_trajectory(model, noise, sigmas, K)
    objective(run.final).backward()
    ours = grads(model)
    model.zero_grad(set_to_none=True)
    objective(unrolled_draft(model, noise, sigmas, K)).backward()
    reference = grads(model)
    assert all(g is not None for g in ours.values())
    for name, g in ours.items():
        torch.testing.assert_close(g, reference[name], rtol=1e-9, atol=1e-12, msg=name)
    assert run.steps == [N - K, N - 1] and not run.states[0].requires_grad


def test_draft_gradient_matches_finite_differences():
    model, noise, sigmas = tiny_model(), unit_noise(batch=1), karras_sigmas(N)
    start = integrate(model, noise * float(sigmas[0]), sigmas, stop=N - K)

    def window_objective() -> torch.Tensor:
        return objective(integrate(model, start, sigmas, start=N - K))

    objective(truncated_trajectory(model, noise, sigmas, K).final).backward()
    for parameter, index in [
        (model.backbone.out_conv.weight, (0, 3, 1, 1)),
        (model.backbone.stem.weight, (2, 1, 0, 2)),
    ]:
        step = 1e-6
        with torch.no_grad():
            parameter[index] += step
            plus = float(window_objective())
            parameter[index] -= 2 * step
            minus = float(window_objective())
            parameter[index] += step
        numeric = (plus - minus) / (2 * step)
        analytic = float(parameter.grad[index])
        assert abs(analytic - numeric) <= 1e-5 * max(1.0, abs(numeric)), (analytic, numeric)


def saved_bytes(model, noise, sigmas, k) -> int:
    """Bytes autograd saves for backward while the K-step window runs."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        truncated_trajectory(model, noise, sigmas, k)
    return total


def test_layerwise_gradient_is_the_full_gradient_restricted_to_the_top():
    full_model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    top_model = copy.deepcopy(full_model)
    objective(truncated_trajectory(full_model, noise, sigmas, K).final).backward()
    full = grads(full_model)
    chosen = dict(select_trainable(top_model, "top", blocks=1))
    assert "backbone.out_conv.weight" in chosen and "backbone.stem.weight" not in chosen
    objective(truncated_trajectory(top_model, noise, sigmas, K).final).backward()
    top = grads(top_model)
    for name, g in top.items():
        if name in chosen:
            assert g is not None, name
            torch.testing.assert_close(g, full[name], rtol=1e-6, atol=1e-14, msg=name)
        else:
            assert g is None, name
    # Frozen lower layers and a window start without grad: less is saved for backward.
    assert saved_bytes(top_model, noise, sigmas, K) < 0.9 * saved_bytes(
        full_model, noise, sigmas, K
    )


def test_checkpointed_full_backpropagation_equals_plain():
    model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    objective(
        truncated_trajectory(model, noise, sigmas, mode="full", checkpoint=False).final
    ).backward()
    plain = grads(model)
    model.zero_grad(set_to_none=True)
    objective(truncated_trajectory(model, noise, sigmas, mode="full").final).backward()
    for name, g in grads(model).items():
        torch.testing.assert_close(g, plain[name], rtol=1e-10, atol=1e-14, msg=name)
    model.zero_grad(set_to_none=True)
    objective(unrolled_draft(model, noise, sigmas, N)).backward()
    for name, g in grads(model).items():
        torch.testing.assert_close(g, plain[name], rtol=1e-9, atol=1e-12, msg=name)


def test_checkpoint_recomputes_each_step_at_its_own_precision():
    # bf16 early steps, float32 last two: the recomputation in backward must use each
    # step's precision, or the gradient would differ from the non-checkpointed one.
    model = tiny_model(dtype=torch.float32)
    noise, sigmas = unit_noise(dtype=torch.float32), karras_sigmas(N)
    policy = Precision(bf16=True, fp32_steps=2)
    results = []
    for checkpoint in (False, True):
        model.zero_grad(set_to_none=True)
        run = truncated_trajectory(
            model, noise, sigmas, mode="full", precision=policy, checkpoint=checkpoint
        )
        objective(run.final).backward()
        results.append(grads(model))
    for name, g in results[1].items():
        torch.testing.assert_close(g, results[0][name], rtol=1e-5, atol=1e-7, msg=name)


def test_refl_is_one_denoiser_call_on_the_sampled_state():
    model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    trajectory = sample(model, noise, sigmas, return_trajectory=True)
    t = 1
    run = truncated_trajectory(model, noise, sigmas, mode="refl", step=t)
    state = trajectory.states[t]
    torch.testing.assert_close(run.states[0], state, rtol=0, atol=0)
    objective(run.final).backward()
    ours = grads(model)
    model.zero_grad(set_to_none=True)
    direct = model(
        state.detach(), torch.full((state.shape[0],), float(sigmas[t]), dtype=state.dtype)
    )
    torch.testing.assert_close(run.final, direct)
    objective(direct).backward()
    for name, g in grads(model).items():
        torch.testing.assert_close(ours[name], g, msg=name)
    drawn = {
        truncated_trajectory(
            model, noise, sigmas, K, mode="refl", generator=torch.Generator().manual_seed(s)
        ).steps[0]
        for s in range(12)
    }
    assert drawn == {N - 2, N - 1}


def test_draft_lv_renoises_the_sample_and_takes_the_last_step():
    model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    copies = 3
    run = truncated_trajectory(
        model,
        noise,
        sigmas,
        mode="draft-lv",
        copies=copies,
        generator=torch.Generator().manual_seed(5),
    )
    clean = sample(model, noise, sigmas)
    eps = torch.randn(
        (copies, *clean.shape), generator=torch.Generator().manual_seed(5), dtype=clean.dtype
    )
    sigma_min = float(sigmas[-2])
    renoised = (clean + sigma_min * eps).flatten(0, 1)
    with torch.no_grad():
        expected = model(renoised, torch.full((renoised.shape[0],), sigma_min, dtype=clean.dtype))
    assert run.final.shape == (copies * noise.shape[0], *noise.shape[1:]) and run.copies == copies
    torch.testing.assert_close(run.final.detach(), expected)
    assert run.final.requires_grad


def test_bad_arguments_are_user_errors():
    model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    with pytest.raises(PirfError, match="window"):
        truncated_trajectory(model, noise, sigmas, N + 1)
    with pytest.raises(PirfError, match="mode"):
        truncated_trajectory(model, noise, sigmas, mode="nope")


class Coupled(torch.nn.Module):
    """``D(x)_a = (1 + p) x_a``, ``D(x)_u = x_u + q x_a``: ``p`` shapes only the input
    channel ``a``, which the solution channel ``u`` reads at the next step."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor(0.1, dtype=torch.float64))
        self.q = torch.nn.Parameter(torch.tensor(0.2, dtype=torch.float64))

    def forward(self, x, sigma):
        return torch.cat([(1 + self.p) * x[:, :1], x[:, 1:] + self.q * x[:, :1]], dim=1)


def test_held_entries_pass_no_gradient_to_the_weights_that_make_them():
    noise = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hold = torch.zeros(2, 4, 4, dtype=torch.bool)
    hold[0] = True
    found = {}
    for held in (None, hold):
        model = Coupled()
        run = truncated_trajectory(model, noise, karras_sigmas(N), 3, hold=held)
        run.final[:, 1].square().mean().backward()  # a reward on the solution only
        found[held is None] = (float(model.p.grad), float(model.q.grad))
    (p_free, _), (p_held, q_held) = found[True], found[False]
    assert abs(p_free) > 1e-6 and p_held == 0.0  # a's maker learns nothing from u's reward
    assert abs(q_held) > 1e-6


def test_held_draft_gradient_equals_an_unrolled_reference():
    model, noise, sigmas = tiny_model(), unit_noise(), karras_sigmas(N)
    hold = torch.zeros(noise.shape[1:], dtype=torch.bool)
    hold[0] = True
    run = truncated_trajectory(model, noise, sigmas, K, hold=hold)
    objective(run.final).backward()
    ours = grads(model)
    model.zero_grad(set_to_none=True)
    levels = [float(s) for s in sigmas]
    x = noise * levels[0]
    with torch.no_grad():
        for i in range(N - K):
            x = reference_heun(model, x, levels[i], levels[i + 1])

    def held_model(x, level):  # every call reads channel 0 as a constant
        return model(torch.cat([x[:, :1].detach(), x[:, 1:]], dim=1), level)

    for i in range(N - K, N):
        x = reference_heun(held_model, x, levels[i], levels[i + 1])
    objective(x).backward()
    reference = grads(model)
    for name, g in ours.items():
        torch.testing.assert_close(g, reference[name], rtol=1e-9, atol=1e-12, msg=name)
