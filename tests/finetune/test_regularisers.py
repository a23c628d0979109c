"""Weight and distillation regularisers, and gradient sanitising."""

import copy

import pytest
import torch

from pirf.errors import PirfError
from pirf.finetune import (
    distillation_regulariser,
    pretrained_snapshot,
    sanitise_gradients,
    select_trainable,
    weight_regulariser,
)
from pirf.finetune.config import resolve
from tests.finetune.tiny import tiny_model, unit_noise


def test_weight_regulariser_pulls_trainable_weights_toward_the_pretrained_ones():
    model = tiny_model()
    pretrained = pretrained_snapshot(model)
    chosen = dict(select_trainable(model, "top", blocks=1))
    at_start = weight_regulariser(model, pretrained, 0.3)
    at_start.backward()
    assert float(at_start.detach()) == 0.0
    assert all(float(p.grad.abs().max()) == 0.0 for p in chosen.values())
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    value = weight_regulariser(model, pretrained, 0.3)
    value.backward()
    expected = sum(float((chosen[n].detach() - pretrained[n]).square().sum()) for n in chosen)
    assert float(value.detach()) == pytest.approx(0.3 * expected, rel=1e-12)
    for name, p in model.named_parameters():
        if name in chosen:
            torch.testing.assert_close(p.grad, 2 * 0.3 * (p.detach() - pretrained[name]))
        else:
            assert p.grad is None
    # A descent step on the regulariser alone moves the weights toward the pretrained ones.
    before = sum(float((chosen[n].detach() - pretrained[n]).square().sum()) for n in chosen)
    with torch.no_grad():
        for p in chosen.values():
            p.sub_(0.5 * p.grad)
    after = sum(float((chosen[n].detach() - pretrained[n]).square().sum()) for n in chosen)
    assert after < before


def test_distillation_regulariser_is_the_output_difference_on_states():
    model = tiny_model()
    frozen = copy.deepcopy(model).requires_grad_(False)
    states, sigmas = [unit_noise(), 0.3 * unit_noise(seed=2)], [2.0, 0.1]
    assert float(distillation_regulariser(model, frozen, states, sigmas, 1.0).detach()) == 0.0
    with torch.no_grad():
        model.backbone.out_conv.bias.add_(0.01)
    value = distillation_regulariser(model, frozen, states, sigmas, 2.0)
    terms = []
    for x, s in zip(states, sigmas, strict=True):
        level = torch.full((x.shape[0],), s, dtype=x.dtype)
        terms.append((model(x, level) - frozen(x, level)).square().mean())
    torch.testing.assert_close(value, 2.0 * torch.stack(terms).mean())
    value.backward()
    assert model.backbone.out_conv.bias.grad.abs().max() > 0
    assert all(p.grad is None for p in frozen.parameters())


def test_masked_distillation_compares_only_the_marked_entries():
    model = tiny_model()
    frozen = copy.deepcopy(model).requires_grad_(False)
    states, sigmas = [unit_noise(), 0.3 * unit_noise(seed=2)], [2.0, 0.1]
    channels, height, width = states[0].shape[1:]
    mask = torch.zeros((channels, height, width), dtype=torch.bool)
    mask[0] = True  # the first channel, as a PDE's input channel
    with torch.no_grad():
        model.backbone.out_conv.bias[0].add_(0.02)  # moves channel 0's output only
        model.backbone.out_conv.bias[1:].add_(0.5)
    value = distillation_regulariser(model, frozen, states, sigmas, 3.0, mask=mask)
    terms = []
    for x, s in zip(states, sigmas, strict=True):
        level = torch.full((x.shape[0],), s, dtype=x.dtype)
        terms.append((model(x, level) - frozen(x, level))[:, 0].square().mean())
    torch.testing.assert_close(value, 3.0 * torch.stack(terms).mean())
    value.backward()
    bias = model.backbone.out_conv.bias.grad
    assert bias[0].abs() > 0 and bias[1:].abs().max() == 0  # only the marked output pulls
    with pytest.raises(PirfError, match="marks no entry"):
        distillation_regulariser(model, frozen, states, sigmas, 1.0, mask=torch.zeros_like(mask))


def test_distilling_the_inputs_needs_a_penalty():
    from pirf.finetune.config import FinetuneConfig, validate

    with pytest.raises(PirfError, match="distill_on inputs needs a distillation penalty"):
        validate(resolve(FinetuneConfig.of(ckpt="c", out="o", distill_on="inputs")))
    validate(resolve(FinetuneConfig.of(ckpt="c", out="o", distill_on="inputs", distill_reg=1.0)))


def nan_step(sanitise: bool) -> tuple[torch.nn.Module, int]:
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = unit_noise()
    out = model(x, torch.full((x.shape[0],), 0.5, dtype=x.dtype))
    reward = -out.square().mean() * torch.tensor(float("nan"), dtype=x.dtype)
    (-reward).backward()
    count = sanitise_gradients(model.parameters()) if sanitise else 0
    optimizer.step()
    return model, count


def test_sanitised_nan_gradients_leave_finite_weights():
    model, count = nan_step(sanitise=True)
    assert count == sum(p.numel() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    unsanitised, _ = nan_step(sanitise=False)
    assert not all(torch.isfinite(p).all() for p in unsanitised.parameters())
