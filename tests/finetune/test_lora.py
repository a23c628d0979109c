"""LoRA factors on the denoiser's conv and linear layers (float64 throughout)."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pirf.errors import PirfError
from pirf.finetune.lora import (
    LORA_DEFAULT_RANK,
    attach_lora,
    has_lora,
    load_lora_factors,
    lora_factors,
    lora_parameter_count,
    merged_state,
)
from pirf.finetune.trainable import trainable_parameters
from pirf.models import layers
from tests.finetune.tiny import objective, tiny_model, unit_noise

SIGMA = torch.tensor([0.4, 3.0], dtype=torch.float64)


def denoise(model: nn.Module) -> torch.Tensor:
    return model(unit_noise(), SIGMA)


def perturb_factors(model: nn.Module, seed: int = 3, std: float = 0.05) -> None:
    """Redraw every factor (B is zero at attachment, which would hide any error)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, factor in trainable_parameters(model):
            noise = torch.randn(factor.shape, generator=generator, dtype=factor.dtype)
            factor.copy_(std * noise)


def expected_layers(model: nn.Module, rank: int) -> dict[str, tuple[int, int, int]]:
    """``{layer name: (rank, fan_in, out)}`` of the layers LoRA should adapt, by type."""
    chosen = {}
    for name, module in model.named_modules():
        if isinstance(module, (layers.Conv2d, nn.Conv2d, nn.Linear)):
            out, fan_in = module.weight.shape[0], module.weight[0].numel()
            chosen[name] = (min(rank, out, fan_in), fan_in, out)
    return chosen


def test_attachment_leaves_the_function_unchanged():
    model = tiny_model()
    before = denoise(model)
    attach_lora(model)
    assert has_lora(model)
    # B is exactly zero, so W + 0 * (B @ A) = W bitwise and the outputs cannot differ.
    assert torch.equal(denoise(model), before)


def test_only_the_factors_train_and_their_count():
    model = tiny_model()
    originals = {id(p) for p in model.parameters()}
    expected = expected_layers(model, LORA_DEFAULT_RANK)
    # The tiny U-Net has 1x1 convolutions from 2 channels, so the rank cap is exercised.
    assert any(r < LORA_DEFAULT_RANK for r, _, _ in expected.values())
    chosen = attach_lora(model)
    assert [name for name, _ in chosen] == [name for name, _ in trainable_parameters(model)]
    assert all(id(p) not in originals for _, p in chosen)
    assert not any(p.requires_grad for p in model.parameters() if id(p) in originals)
    layer_names = {name.split(".parametrizations.")[0] for name, _ in chosen}
    assert layer_names == set(expected)
    count = sum(r * (fan_in + out) for r, fan_in, out in expected.values())
    assert lora_parameter_count(model) == count == sum(p.numel() for _, p in chosen)
    for name, (r, fan_in, out) in expected.items():
        factors = dict(chosen)
        assert factors[f"{name}.parametrizations.weight.0.lora_a"].shape == (r, fan_in)
        assert factors[f"{name}.parametrizations.weight.0.lora_b"].shape == (out, r)
        assert not factors[f"{name}.parametrizations.weight.0.lora_b"].any()


def test_merged_state_loads_into_the_plain_model():
    model = tiny_model()
    plain = copy.deepcopy(model)
    keys = list(model.state_dict())
    attach_lora(model, rank=3, alpha=4.5)
    perturb_factors(model)
    state = merged_state(model)
    assert list(state) == keys
    assert not any(value.requires_grad for value in state.values())
    plain.load_state_dict(state, strict=True)
    with torch.no_grad():
        lora_output, plain_output = denoise(model), denoise(plain)
    # Same weights up to the rounding of one addition, then the same float64 network.
    torch.testing.assert_close(plain_output, lora_output, rtol=1e-12, atol=1e-14)
    # The update is (alpha / rank) B @ A, here 1.5 B @ A, merged into the saved weight.
    layer = model.backbone.out_conv
    delta = layer.parametrizations.weight[0]
    original = layer.parametrizations.weight.original
    update = 1.5 * (delta.lora_b @ delta.lora_a).view_as(original)
    assert update.abs().max() > 1e-3
    torch.testing.assert_close(
        state["backbone.out_conv.weight"], original + update, rtol=1e-15, atol=1e-15
    )


def test_merged_state_without_lora_is_the_state_dict():
    model = tiny_model()
    state = merged_state(model)
    assert list(state) == list(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not has_lora(model) and lora_parameter_count(model) == 0


def test_factor_gradients_match_finite_differences():
    model = tiny_model()
    attach_lora(model, rank=2)
    perturb_factors(model)
    delta = model.backbone.out_conv.parametrizations.weight[0]
    objective(denoise(model)).backward()
    entries = [(delta.lora_a, (1, 5)), (delta.lora_b, (0, 1))]
    step = 1e-6
    for factor, index in entries:
        with torch.no_grad():
            factor[index] += step
            up = objective(denoise(model)).item()
            factor[index] -= 2 * step
            down = objective(denoise(model)).item()
            factor[index] += step
        numeric = (up - down) / (2 * step)
        analytic = factor.grad[index].item()
        # Central difference error ~ step^2 f''' + eps |f| / step, about 1e-10 relative.
        assert abs(numeric) > 1e-4
        assert abs(analytic - numeric) <= 1e-6 * abs(numeric)


def test_prefixes_restrict_the_layers_and_errors():
    model = tiny_model()
    chosen = attach_lora(model, rank=2, prefixes=["backbone.out_conv"])
    assert [name for name, _ in chosen] == [
        "backbone.out_conv.parametrizations.weight.0.lora_a",
        "backbone.out_conv.parametrizations.weight.0.lora_b",
    ]
    with pytest.raises(PirfError, match="already has LoRA"):
        attach_lora(model)
    with pytest.raises(PirfError, match="no module"):
        attach_lora(tiny_model(), prefixes=["backbone.nothing"])
    for rank in (0, -1, 1.5, True):
        with pytest.raises(PirfError, match="positive integer"):
            attach_lora(tiny_model(), rank=rank)
    with pytest.raises(PirfError, match="alpha"):
        attach_lora(tiny_model(), alpha=0.0)
    with pytest.raises(PirfError, match="no conv or linear layer"):
        attach_lora(nn.Sequential(nn.GroupNorm(1, 4), nn.SiLU()))


def test_factor_round_trip_restores_the_outputs():
    model = tiny_model()
    attach_lora(model)
    perturb_factors(model, seed=4)
    saved = lora_factors(model)
    before = denoise(model)
    perturb_factors(model, seed=5)
    assert (denoise(model) - before).abs().max() > 1e-3
    load_lora_factors(model, saved)
    assert torch.equal(denoise(model), before)


def test_loading_factors_names_the_problem():
    model = tiny_model()
    attach_lora(model, rank=2)
    saved = lora_factors(model)
    name = next(iter(saved))
    with pytest.raises(PirfError, match=f"'{name}' is missing"):
        load_lora_factors(model, {k: v for k, v in saved.items() if k != name})
    with pytest.raises(PirfError, match="'extra' is not a LoRA factor"):
        load_lora_factors(model, {**saved, "extra": torch.zeros(1)})
    with pytest.raises(PirfError, match=f"'{name}' has shape"):
        load_lora_factors(model, {**saved, name: torch.zeros(1, 1)})
    with pytest.raises(PirfError, match="no LoRA factors"):
        load_lora_factors(tiny_model(), saved)


def test_gradients_under_activation_checkpointing():
    model = tiny_model()
    attach_lora(model)
    perturb_factors(model)
    objective(denoise(model)).backward()
    plain = {name: p.grad.clone() for name, p in trainable_parameters(model)}
    model.zero_grad(set_to_none=True)
    output = checkpoint(model, unit_noise(), SIGMA, use_reentrant=False)
    objective(output).backward()
    for name, p in trainable_parameters(model):
        assert plain[name].abs().max() > 0
        # The recomputation repeats the same float64 operations: equal up to rounding.
        torch.testing.assert_close(p.grad, plain[name], rtol=1e-12, atol=1e-15)


def test_torch_layers_as_the_root_and_the_rank_cap():
    torch.manual_seed(0)
    linear = nn.Linear(3, 5, dtype=torch.float64)
    chosen = attach_lora(linear, rank=8)
    assert [tuple(p.shape) for _, p in chosen] == [(3, 3), (5, 3)]
    assert list(merged_state(linear)) == ["weight", "bias"]
    conv = nn.Sequential(nn.Conv2d(2, 6, 3, dtype=torch.float64))
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    plain = copy.deepcopy(conv)
    attach_lora(conv, rank=2)
    perturb_factors(conv)
    plain.load_state_dict(merged_state(conv), strict=True)
    torch.testing.assert_close(plain(x), conv(x), rtol=1e-12, atol=1e-14)
