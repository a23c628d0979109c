"""``PIRFTrainer`` on in-memory denoisers with per-sample losses (no PDE): non-finite
samples and gradients, what trains, the weight penalty, the draws, a user's own network."""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from pirf.errors import PirfError
from pirf.finetune import FinetuneConfig, PIRFTrainer, lora_factors, merged_state
from pirf.finetune.trainable import top_names
from tests.finetune.tiny import tiny_model

SHAPE = (2, 8, 8)


def settings(**changes: Any) -> FinetuneConfig:
    """Batch 4 on 4-step trajectories, K = 2, full learning rate from the first step."""
    values: dict[str, Any] = {
        "ckpt": ".",
        "out": ".",
        "steps": 4,
        "truncation": 2,
        "batch": 4,
        "lr": 1e-3,
        "warmup": 0,
        "iters": 10,
    }
    values.update(changes)
    return FinetuneConfig.of(**values)


def trainer(loss_fn=None, *, model: nn.Module | None = None, **changes: Any) -> PIRFTrainer:
    model = tiny_model(dtype=torch.float32) if model is None else model
    return PIRFTrainer(model, settings(**changes), shape=SHAPE, loss_fn=loss_fn or energy)


def energy(samples: torch.Tensor) -> torch.Tensor:
    """Per-sample mean square (a smooth stand-in for a residual)."""
    return samples.square().mean((1, 2, 3))


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def same(module: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, saved[name]) for name, value in module.state_dict().items())


def test_a_batch_without_finite_loss_changes_nothing():
    def nothing_finite(samples):
        return energy(samples) * math.nan

    t = trainer(nothing_finite)
    weights, ema = snapshot(t.model), snapshot(t.ema)
    stats = t.step(0)
    assert stats.skipped and stats.nonfinite_samples == 4 and math.isnan(stats.reward_loss)
    assert same(t.model, weights) and same(t.ema, ema)
    assert not t.optimizer.state  # Adam never stepped, so no moments were made either


def test_a_non_finite_sample_is_left_out_of_the_mean():
    captured = {}

    def one_bad(samples):
        captured["samples"] = samples.detach().clone()
        values = energy(samples)
        bad = torch.arange(len(values)) == 1
        return torch.where(bad, torch.full_like(values, math.nan), values)

    def without_it(samples):
        return energy(samples)[[0, 2, 3]]

    left_out, dropped = trainer(one_bad), trainer(without_it)
    left_out.set_scale(2.5)
    dropped.set_scale(2.5)
    before = snapshot(left_out.model)
    stats = left_out.step(0)
    assert not stats.skipped and stats.nonfinite_samples == 1
    assert stats.nonfinite_gradients == 0
    # the mean over the three finite samples, divided by the scale, recomputed in float64
    finite = captured["samples"][[0, 2, 3]].double().square().mean((1, 2, 3))
    assert stats.reward_loss == pytest.approx(float(finite.mean()) / 2.5, rel=1e-6)
    assert all(torch.isfinite(p).all() for p in left_out.model.parameters())
    assert not same(left_out.model, before)
    # the same update as a loss that never had the sample: the per-sample gradient is the
    # same vector (1/3 at the finite samples, 0 at the other), so the weights are bitwise equal
    reference = dropped.step(0)
    assert reference.reward_loss == stats.reward_loss and reference.grad_norm == stats.grad_norm
    assert same(left_out.model, snapshot(dropped.model))


def test_a_sample_whose_loss_has_a_nan_gradient_is_left_out_too():
    def one_bad(samples):
        shift = torch.zeros(len(samples))
        shift[1] = -1e6
        return (energy(samples) + shift).sqrt()  # NaN at sample 1, and NaN d/dx there

    def without_it(samples):
        return energy(samples)[[0, 2, 3]].sqrt()

    left_out, dropped = trainer(one_bad), trainer(without_it)
    stats, reference = left_out.step(0), dropped.step(0)
    assert stats.nonfinite_samples == 1 and stats.nonfinite_gradients == 0
    assert stats.grad_norm == reference.grad_norm > 0
    assert same(left_out.model, snapshot(dropped.model))


def test_infinite_gradient_entries_are_zeroed_and_counted():
    t = trainer()
    weight = t.model.backbone.out_conv.weight
    assert weight.requires_grad

    def poison(grad):
        grad = grad.clone()
        grad[0, 0, 0, 0] = math.inf
        return grad

    weight.register_hook(poison)
    before = weight.detach().clone()
    stats = t.step(0)
    assert stats.nonfinite_gradients == 1 and not stats.skipped
    assert math.isfinite(stats.grad_norm) and stats.grad_norm > 0
    # the entry's gradient became 0, and Adam's first step of a zero gradient is exactly 0
    assert weight[0, 0, 0, 0] == before[0, 0, 0, 0]
    changed = (weight.detach() != before).sum()
    assert changed == weight.numel() - 1


class InfiniteGradient(torch.autograd.Function):
    """Identity forward; the backward pass sends +inf into one entry of the samples."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        grad[0, 0, 0, 0] = math.inf
        return grad


def test_infinite_sample_gradients_leave_finite_weights():
    t = trainer(lambda samples: energy(InfiniteGradient.apply(samples)))
    stats = t.step(0)
    assert stats.nonfinite_gradients > 0 and stats.nonfinite_samples == 0
    assert math.isfinite(stats.reward_loss) and math.isfinite(stats.grad_norm)
    for network in (t.model, t.ema):
        assert all(torch.isfinite(p).all() for p in network.parameters())


def test_frozen_weights_never_change_and_all_train_with_all():
    t = trainer(trainable="top")
    trainable = {name for name, _ in t.named_trainable}
    before = snapshot(t.model)
    for iteration in range(2):
        t.step(iteration)
    assert 0 < len(trainable) < len(before)
    for name, parameter in t.model.named_parameters():
        if name in trainable:
            assert parameter.grad is not None and not torch.equal(parameter, before[name])
        else:
            assert parameter.grad is None and not parameter.requires_grad, name
            assert torch.equal(parameter, before[name]), name
            assert torch.equal(t.ema.get_parameter(name), before[name]), name

    everything = trainer(trainable="all")
    before = snapshot(everything.model)
    everything.step(0)
    assert everything.parameter_count == sum(p.numel() for p in everything.model.parameters())
    unchanged = [n for n, p in everything.model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def perturbation(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return 0.01 * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_weight_penalty_pulls_toward_the_pretrained_weights():
    lam = 0.3
    t = trainer(model=tiny_model(), trainable="top", weight_reg=lam)
    deltas = {}
    with torch.no_grad():
        for index, (name, parameter) in enumerate(t.model.named_parameters()):
            deltas[name] = perturbation(parameter.shape, index)
            parameter += deltas[name]  # frozen ones too: they must not enter the penalty
    penalty = t.weight_penalty()
    trainable = dict(t.named_trainable)
    expected = lam * sum(deltas[name].square().sum() for name in trainable)
    # float64: theta - theta0 recovers delta up to eps |theta| / |delta| ~ 1e-14 relative
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-10)
    penalty.backward()
    for name, parameter in t.model.named_parameters():
        if name in trainable:
            torch.testing.assert_close(parameter.grad, 2 * lam * deltas[name], rtol=1e-10, atol=0)
        else:
            assert parameter.grad is None


def test_lora_weight_penalty_is_the_merged_weight_change():
    lam = 0.3
    model = tiny_model()
    pretrained = snapshot(model)
    t = trainer(model=model, trainable="lora", weight_reg=lam)
    assert float(t.weight_penalty().detach()) == 0.0  # B = 0: the merged weights are the pretrained
    with torch.no_grad():
        for index, (_, factor) in enumerate(t.named_trainable):
            factor.copy_(perturbation(factor.shape, index) * 5)
    merged = merged_state(t.model)
    assert list(merged) == list(pretrained)
    expected = lam * sum((merged[k] - pretrained[k]).square().sum() for k in merged)
    penalty = t.weight_penalty()
    assert float(expected) > 0
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-10)
    penalty.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for _, p in t.named_trainable)


def test_lora_factors_depend_on_the_run_seed_only():
    factors = []
    for global_seed in (0, 1):
        model = tiny_model(dtype=torch.float32)
        torch.manual_seed(global_seed)
        t = PIRFTrainer(model, settings(trainable="lora"), shape=SHAPE, loss_fn=energy)
        factors.append(lora_factors(t.model))
    assert all(torch.equal(factors[0][name], factors[1][name]) for name in factors[0])


def test_lora_layers_choose_the_adapted_layers():
    top = trainer(model=tiny_model(), trainable="lora")
    every = trainer(model=tiny_model(), trainable="lora", lora_layers="all")
    prefixes = top_names(tiny_model())
    adapted_top = {name.split(".parametrizations")[0] for name, _ in top.named_trainable}
    adapted_all = {name.split(".parametrizations")[0] for name, _ in every.named_trainable}
    assert adapted_top and all(
        any(name == p or name.startswith(p + ".") for p in prefixes) for name in adapted_top
    )
    assert adapted_top < adapted_all
    assert any(not any(name.startswith(p) for p in prefixes) for name in adapted_all)


def test_lora_factor_gradient_is_the_weight_gradient_projected_on_a():
    # With B = 0 the LoRA model is the base model, so the truncated objective is the same
    # and dL/dB must be scale * dL/dW @ A^T for every adapted layer (chain rule).
    base = tiny_model()
    layer_wise = trainer(model=copy.deepcopy(base), weight_reg=0.0)
    lora = trainer(model=copy.deepcopy(base), trainable="lora", weight_reg=0.0)
    losses = []
    for t in (layer_wise, lora):
        total = t._loss(t._trajectory(0, *t.draws(0))[0])[0]
        total.backward()
        losses.append(float(total.detach()))
    assert losses[0] == losses[1]
    weight_grads = {name: p.grad for name, p in layer_wise.named_trainable}
    checked = 0
    for name, module in lora.model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            delta = module.parametrizations.weight[0]
            g = weight_grads[f"{name}.weight"].reshape(delta.lora_b.shape[0], -1)
            expected = delta.scale * g @ delta.lora_a.detach().T
            torch.testing.assert_close(delta.lora_b.grad, expected, rtol=1e-10, atol=1e-14)
            checked += 1
    assert checked >= 2


def test_lora_on_top_layers_needs_a_model_that_names_them():
    model = tiny_model()
    plain = nn.Sequential(model.backbone)  # a module without top_module_names
    with pytest.raises(PirfError, match="lora_layers='all'"):
        PIRFTrainer(plain, settings(trainable="lora"), shape=SHAPE, loss_fn=energy)


def test_draws_are_keyed_by_the_iteration():
    t = trainer(seed=3)
    fresh = trainer(seed=3)
    for iteration in range(5):
        t.draws(iteration)
    steps, noise, generator = t.draws(5)
    steps_fresh, noise_fresh, generator_fresh = fresh.draws(5)
    assert steps == steps_fresh == 4 and noise.shape == (4, *SHAPE)
    assert torch.equal(noise, noise_fresh)
    assert torch.equal(generator.get_state(), generator_fresh.get_state())
    assert not torch.equal(t.draws(6)[1], noise)
    assert not torch.equal(trainer(seed=4).draws(5)[1], noise)

    budgets = trainer(random_steps=(4, 6, 8))
    drawn = [budgets.draws(i)[0] for i in range(30)]
    assert set(drawn) <= {4, 6, 8} and len(set(drawn)) >= 2
    again = trainer(random_steps=(4, 6, 8))
    assert drawn == [again.draws(i)[0] for i in range(29, -1, -1)][::-1]  # in any order

    single = trainer(seed=3).draws(7)
    ranks = [
        PIRFTrainer(
            tiny_model(dtype=torch.float32),
            settings(seed=3),
            shape=SHAPE,
            loss_fn=energy,
            rank=rank,
            world=2,
        ).draws(7)
        for rank in range(2)
    ]
    assert ranks[0][1].shape == (2, *SHAPE)
    assert torch.equal(torch.cat([ranks[0][1], ranks[1][1]]), single[1])
    assert ranks[0][0] == ranks[1][0] == single[0]


class OwnDenoiser(nn.Module):
    """A user's denoiser: EDM-like preconditioning around two convolutions, no
    ``top_module_names``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Conv2d(2, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        scale = (sigma.square() + 0.25).sqrt()
        features = torch.tanh(self.body(x / scale))
        return 0.25 / scale.square() * x + 0.5 * sigma / scale * self.head(features)


def test_own_denoiser_trains_the_named_layers():
    model = OwnDenoiser()
    before = snapshot(model)
    t = PIRFTrainer(model, settings(), shape=SHAPE, loss_fn=energy, top_prefixes=["head"])
    assert [name for name, _ in t.named_trainable] == ["head.weight", "head.bias"]
    stats = t.step(0)
    assert stats.grad_norm > 0 and not stats.skipped
    assert torch.equal(model.body.weight, before["body.weight"])
    assert torch.equal(model.body.bias, before["body.bias"])
    assert not torch.equal(model.head.weight, before["head.weight"])
    assert not torch.equal(model.head.bias, before["head.bias"])
    with pytest.raises(PirfError, match="does not name its top layers; pass top_prefixes"):
        PIRFTrainer(OwnDenoiser(), settings(), shape=SHAPE, loss_fn=energy)


@pytest.mark.parametrize("trainable", ["top", "lora"])
def test_compiled_steps_without_gradient_match_eager_and_see_each_update(trainable, monkeypatch):
    # The compiled view shares the weights: if it had captured them as constants, the
    # second and third iterations would sample with stale weights and drift from eager.
    # Dynamo's graph capture (what decides that) with the eager backend: seconds, where
    # inductor's code generation takes minutes on a CPU.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch.manual_seed(0)
    model = tiny_model(dtype=torch.float32)
    runs = {}
    for compiled in (False, True):
        t = trainer(model=copy.deepcopy(model), trainable=trainable, compile=compiled)
        assert (t.fast is not None) == compiled
        losses = [t.step(iteration).loss for iteration in range(3)]
        runs[compiled] = losses, {n: p.detach().clone() for n, p in t.model.named_parameters()}
    (eager_losses, eager_weights), (fast_losses, fast_weights) = runs[False], runs[True]
    assert fast_losses == pytest.approx(eager_losses, rel=1e-5)
    assert eager_losses[2] != pytest.approx(eager_losses[0], rel=1e-3)  # the weights moved
    for name, value in eager_weights.items():
        torch.testing.assert_close(fast_weights[name], value, rtol=1e-5, atol=1e-7)
