"""The U-Net: shapes, periodic padding, gradients, layer naming, parameter counts."""

import pytest
import torch
import torch.nn.functional as F

from pirf.errors import PirfError
from pirf.models import (
    EDMDenoiser,
    UNet,
    UNetConfig,
    edm_loss,
    parameters_under,
    preset_denoiser,
    unet_config,
)
from pirf.models.layers import Conv2d, position_features

TINY_ATTENTION = {
    "base_channels": 8,
    "channel_mult": (1, 2, 2),
    "blocks_per_level": 1,
    "attention_levels": (1,),
    "dropout": 0.0,
}


def randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the near-zero initialisations by O(1) weights so every path matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in**0.5)
    return net


@pytest.mark.parametrize(
    ("preset", "size", "periodic"),
    [("tiny", 16, (False, False)), ("small", 16, (True, True)), ("paper", 8, (False, True))],
)
def test_presets_map_fields_to_fields(preset, size, periodic):
    denoiser = preset_denoiser(preset, channels=3, resolution=size * 4, periodic=periodic).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = denoiser(x, torch.tensor([0.1, 10.0]))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_non_square_grids_and_indivisible_sizes():
    net = UNet(UNetConfig(in_channels=1, **TINY_ATTENTION)).eval()
    assert net(torch.randn(1, 1, 8, 12), torch.zeros(1)).shape == (1, 1, 8, 12)
    with pytest.raises(PirfError, match="divisible by 4"):
        net(torch.randn(1, 1, 8, 10), torch.zeros(1))


def rolled_difference(net, x, labels, shifts, dims):
    with torch.no_grad():
        shifted_first = net(torch.roll(x, shifts, dims), labels)
        shifted_after = torch.roll(net(x, labels), shifts, dims)
    return (shifted_first - shifted_after).abs().max().item() / shifted_after.abs().max().item()


def test_periodic_network_commutes_with_circular_shifts():
    net = randomise(UNet(UNetConfig(in_channels=2, periodic=(True, True), **TINY_ATTENTION)))
    net.eval()
    x, labels = torch.randn(2, 2, 16, 16), torch.tensor([-1.0, 0.5])
    # Shifts by multiples of the coarsest stride (4) commute exactly.
    assert rolled_difference(net, x, labels, (4, 8), (-2, -1)) < 1e-5
    assert rolled_difference(net, x, labels, (-12, 0), (-2, -1)) < 1e-5
    # An odd shift does not (the box-filter pooling grid moves), which shows the test bites.
    assert rolled_difference(net, x, labels, (1, 0), (-2, -1)) > 1e-3


def test_position_harmonics_break_only_the_shifts_the_pde_lacks():
    # Kolmogorov's forcing cos(4 y) on a 16-point axis has period 4 cells: the network must
    # keep commuting with shifts by that period (a symmetry of the PDE) and stop commuting
    # with half of it (2 cells: the forcing's sign flips), which it could not see before.
    config = {**TINY_ATTENTION, "channel_mult": (1, 2)}  # stride 2: 2-cell shifts commute
    plain = randomise(UNet(UNetConfig(in_channels=2, periodic=(True, True), **config)))
    placed = randomise(
        UNet(
            UNetConfig(in_channels=2, periodic=(True, True), position_harmonics=((1, 4),), **config)
        )
    )
    x, labels = torch.randn(2, 2, 16, 16), torch.tensor([-1.0, 0.5])
    assert rolled_difference(plain.eval(), x, labels, 2, -1) < 1e-5
    assert rolled_difference(placed.eval(), x, labels, 2, -1) > 1e-2
    assert rolled_difference(placed, x, labels, 4, -1) < 1e-5
    assert rolled_difference(placed, x, labels, 6, -2) < 1e-5  # x: no harmonic, still free


def test_position_features_are_the_harmonics_of_the_grid_index():
    features = position_features(((1, 3), (0, 1)), (8, 12), dtype=torch.float64)
    assert features.shape == (4, 8, 12)
    j = torch.arange(12, dtype=torch.float64)
    i = torch.arange(8, dtype=torch.float64)[:, None]
    torch.testing.assert_close(features[0], torch.cos(2 * torch.pi * 3 * j / 12).expand(8, 12))
    torch.testing.assert_close(features[1], torch.sin(2 * torch.pi * 3 * j / 12).expand(8, 12))
    torch.testing.assert_close(features[3], torch.sin(2 * torch.pi * i / 8).expand(8, 12))
    assert position_features((), (4, 4)).shape == (0, 4, 4)


def test_position_harmonics_round_trip_and_are_checked():
    config = UNetConfig(in_channels=3, position_harmonics=((1, 4),), **TINY_ATTENTION)
    assert UNetConfig.from_json(config.to_json()) == config
    assert config.to_json()["position_harmonics"] == [[1, 4]]
    older = {k: v for k, v in config.to_json().items() if k != "position_harmonics"}
    assert UNetConfig.from_json(older).position_harmonics == ()  # checkpoints from before
    for bad in (((2, 4),), ((0, 0),)):
        with pytest.raises(PirfError, match="position_harmonics"):
            UNetConfig(in_channels=1, position_harmonics=bad)


def test_burgers_padding_is_periodic_in_x_only():
    net = randomise(UNet(UNetConfig(in_channels=1, periodic=(False, True), **TINY_ATTENTION)))
    net.eval()
    x, labels = torch.randn(1, 1, 16, 16), torch.zeros(1)
    assert rolled_difference(net, x, labels, 4, -1) < 1e-5
    assert rolled_difference(net, x, labels, 4, -2) > 1e-2


def test_non_periodic_network_does_not_commute_with_wrapping():
    net = randomise(UNet(UNetConfig(in_channels=1, **TINY_ATTENTION))).eval()
    x, labels = torch.randn(1, 1, 16, 16), torch.zeros(1)
    assert rolled_difference(net, x, labels, 4, -1) > 1e-2
    assert rolled_difference(net, x, labels, 4, -2) > 1e-2


def shifted(x: torch.Tensor, offset: int, dim: int, periodic: bool) -> torch.Tensor:
    """y[i] = x[i + offset] along dim, wrapping if periodic, else zero outside."""
    if periodic:
        return torch.roll(x, -offset, dim)
    out = torch.zeros_like(x)
    n = x.shape[dim]
    src = x.narrow(dim, max(offset, 0), n - abs(offset))
    out.narrow(dim, max(-offset, 0), n - abs(offset)).copy_(src)
    return out


@pytest.mark.parametrize("periodic", [(False, False), (True, True), (False, True), (True, False)])
def test_conv_padding_matches_a_sum_of_shifts(periodic):
    """Reference: a 3x3 correlation written as a sum of shifted copies of the input."""
    torch.manual_seed(0)
    conv = Conv2d(2, 3, 3, periodic=periodic)
    x = torch.randn(1, 2, 5, 6)
    expected = conv.bias.reshape(1, -1, 1, 1).expand(1, 3, 5, 6).clone()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            moved = shifted(shifted(x, di, -2, periodic[0]), dj, -1, periodic[1])
            expected += torch.einsum("oc,bchw->bohw", conv.weight[:, :, di + 1, dj + 1], moved)
    torch.testing.assert_close(conv(x), expected.detach())
    # An impulse at the first column reaches the last column only through wrapping.
    impulse = torch.zeros(1, 2, 5, 6)
    impulse[..., 2, 0] = 1.0
    reached = (conv(impulse) - conv.bias.reshape(1, -1, 1, 1))[..., -1].abs().max().item()
    assert (reached > 0) == periodic[1]


def test_gradient_reaches_every_parameter():
    net = UNet(UNetConfig(in_channels=2, adaptive_scale=True, **TINY_ATTENTION))
    denoiser = EDMDenoiser(net)
    loss = edm_loss(denoiser, torch.randn(3, 2, 8, 8), generator=torch.Generator().manual_seed(0))
    loss.mean().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_top_module_names_are_the_finest_decoder_blocks_and_output():
    net = UNet(UNetConfig(in_channels=1, **TINY_ATTENTION)).eval()
    # Independent check: record execution order and output grid of every module.
    order, sizes = [], {}
    modules = {m: n for n, m in net.named_modules() if n.count(".") <= 1 and n}

    def hook(module, inputs, output):
        order.append(modules[module])
        sizes[modules[module]] = tuple(output.shape[-2:])

    handles = [m.register_forward_hook(hook) for m in modules]
    net(torch.randn(1, 1, 16, 16), torch.zeros(1))
    for handle in handles:
        handle.remove()
    decoder = [n for n in order if n.startswith("decoder.")]
    finest_tail = []
    for name in reversed(decoder):
        if sizes[name] != (16, 16):
            break
        finest_tail.insert(0, name)
    assert order[-2:] == ["out_norm", "out_conv"]
    assert net.top_module_names() == [*finest_tail, "out_norm", "out_conv"]
    assert net.top_module_names(2) == [*finest_tail[-2:], "out_norm", "out_conv"]
    assert net.top_module_names(0) == ["out_norm", "out_conv"]
    assert len(finest_tail) == 3  # up block + blocks_per_level + 1
    with pytest.raises(PirfError, match="cannot select 4"):
        net.top_module_names(4)
    # Their parameters, and the same names through the denoiser.
    chosen = parameters_under(net, net.top_module_names(1))
    expected = sum(
        p.numel() for n in net.top_module_names(1) for p in net.get_submodule(n).parameters()
    )
    assert sum(p.numel() for _, p in chosen) == expected
    denoiser = EDMDenoiser(net)
    names = denoiser.top_module_names(1)
    assert names == [f"backbone.{n}" for n in net.top_module_names(1)]
    assert [n for n, _ in parameters_under(denoiser, names)] == [f"backbone.{n}" for n, _ in chosen]


def test_channels_last_gives_the_same_result():
    net = randomise(UNet(UNetConfig(in_channels=2, periodic=(True, False), **TINY_ATTENTION)))
    net.eval()
    x, labels = torch.randn(2, 2, 8, 8), torch.tensor([0.1, -0.3])
    with torch.no_grad():
        reference = net(x, labels)
        net = net.to(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last), labels)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_runs_and_stays_close_to_float32():
    """CPU autocast stands in for CUDA: mixed dtypes must meet without errors."""
    net = randomise(UNet(UNetConfig(in_channels=2, **TINY_ATTENTION))).eval()
    x, labels = torch.randn(2, 2, 8, 8), torch.tensor([0.1, -0.3])
    reference = net(x, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, labels)
    out.float().sum().backward()
    assert (out.float() - reference).norm() / reference.norm() < 0.03


def test_dropout_is_active_only_in_training():
    config = UNetConfig(in_channels=1, **{**TINY_ATTENTION, "dropout": 0.5})
    net = randomise(UNet(config))
    x, labels = torch.randn(1, 1, 8, 8), torch.zeros(1)
    assert not torch.equal(net.train()(x, labels), net(x, labels))
    assert torch.equal(net.eval()(x, labels), net(x, labels))


def ddpmpp_parameter_count(channels, base, mults, blocks, attention_levels, emb_mult=4):
    """Parameter count of DDPM++ written from its description, block by block."""
    emb = emb_mult * base

    def block(cin, cout, attention=False, resample=False):
        count = 2 * cin + 9 * cin * cout + cout  # norm0, conv0
        count += emb * cout + cout + 2 * cout + 9 * cout * cout + cout  # emb, norm1, conv1
        if cin != cout or resample:
            count += cin * cout + cout  # 1x1 skip projection
        if attention:
            count += 2 * cout + 3 * cout * cout + 3 * cout + cout * cout + cout
        return count

    total = base * emb + emb + emb * emb + emb  # embedding MLP
    total += 9 * channels * base + base  # stem
    skips, width = [base], base
    for level, mult in enumerate(mults):
        if level:
            total += block(width, width, resample=True)
            skips.append(width)
        for _ in range(blocks):
            total += block(width, base * mult, attention=level in attention_levels)
            width = base * mult
            skips.append(width)
    total += block(width, width, attention=True) + block(width, width)
    for level in reversed(range(len(mults))):
        if level < len(mults) - 1:
            total += block(width, width, resample=True)
        for index in range(blocks + 1):
            attention = index == blocks and level in attention_levels
            total += block(width + skips.pop(), base * mults[level], attention=attention)
            width = base * mults[level]
    return total + 2 * width + 9 * width * channels + channels  # out_norm, out_conv


@pytest.mark.parametrize(("resolution", "expected"), [(128, 54_410_882), (32, 55_729_282)])
def test_paper_preset_has_the_reference_size(resolution, expected):
    config = unet_config("paper", channels=2, resolution=resolution)
    with torch.device("meta"):
        count = sum(p.numel() for p in UNet(config).parameters())
    levels = (1,) if resolution == 32 else ()
    assert count == ddpmpp_parameter_count(2, 128, (2, 2, 2), 4, levels) == expected


def test_config_round_trips_and_rejects_unknown_keys():
    config = UNetConfig(in_channels=3, periodic=(True, False), **TINY_ATTENTION)
    assert UNetConfig.from_json(config.to_json()) == config
    assert UNet(config).architecture() == {"backbone": "unet", "config": config.to_json()}
    with pytest.raises(PirfError, match="unknown U-Net configuration key"):
        UNetConfig.from_json({**config.to_json(), "width": 3})
    with pytest.raises(PirfError, match="attention_levels"):
        UNetConfig(in_channels=1, channel_mult=(1, 2), attention_levels=(2,))


def test_noise_labels_change_the_output():
    net = randomise(UNet(UNetConfig(in_channels=1, **TINY_ATTENTION))).eval()
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    out = net(x, torch.tensor([-1.0, 1.0]))
    assert F.mse_loss(out[0], out[1]) > 1e-6
