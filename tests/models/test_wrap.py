"""``pirf.models.wrap``: output extraction, noise labels, the probe's one-line errors, top
modules relative to the user's network, and checkpoints of wrapped networks."""

from __future__ import annotations

import pytest
import torch

from pirf.errors import PirfError
from pirf.models import (
    EDMDenoiser,
    load_checkpoint,
    save_checkpoint,
    user_network,
    wrap,
)
from pirf.models.presets import preset_denoiser
from tests.models.toy_networks import (
    DictNet,
    PlainDenoiser,
    SampleNet,
    TupleNet,
    first_item,
    half_log_sigma,
)

SHAPE = (2, 8, 8)
FACTORY = "tests.models.toy_networks:TupleNet"


def net(kind: type = TupleNet, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return kind().double()


def fields(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(seed)).double()


SIGMA = torch.tensor([0.01, 0.7, 20.0], dtype=torch.float64)


def by_hand(network: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """EDM's preconditioning written out (Karras et al. 2022, table 1), sd = 0.5."""
    s = sigma.reshape(-1, 1, 1, 1)
    raw = network(x / (s**2 + 0.25).sqrt(), sigma.log() / 4)[0]
    return 0.25 / (s**2 + 0.25) * x + s * 0.5 / (s**2 + 0.25).sqrt() * raw


@pytest.mark.parametrize(
    ("kind", "output"),
    [(TupleNet, 0), (TupleNet, first_item), (SampleNet, "sample"), (DictNet, "denoised")],
)
def test_every_output_form_gives_the_edm_denoiser(kind, output):
    x = fields()
    model = wrap(net(kind), shape=SHAPE, output=output)
    expected = by_hand(net(TupleNet), x, SIGMA)
    torch.testing.assert_close(model(x, SIGMA), expected, rtol=1e-12, atol=1e-12)


def test_edm_labels_are_bitwise_what_a_native_backbone_receives():
    x = fields()

    class Native(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = net()

        def forward(self, x, labels):
            return self.inner(x, labels)[0]

    native = EDMDenoiser(Native())
    wrapped = wrap(net(), shape=SHAPE, output=0)
    assert torch.equal(native(x, SIGMA), wrapped(x, SIGMA))


@pytest.mark.parametrize(
    ("noise_label", "expected"),
    [
        ("edm", lambda s: s.log() / 4),
        ("sigma", lambda s: s),
        ("log_sigma", lambda s: s.log()),
        (half_log_sigma, lambda s: s.log() / 2),
    ],
)
def test_noise_labels(noise_label, expected):
    network = net()
    model = wrap(network, shape=SHAPE, output=0, noise_label=noise_label)
    model(fields(), SIGMA)
    torch.testing.assert_close(network.last_labels, expected(SIGMA), rtol=1e-15, atol=0)


def test_a_complete_denoiser_is_called_as_it_is():
    network = net(PlainDenoiser)
    model = wrap(network, shape=SHAPE, kind="denoiser")
    x = fields()
    assert torch.equal(model(x, SIGMA), network(x, SIGMA))
    assert torch.equal(model(x, 0.3), network(x, torch.full((3,), 0.3, dtype=torch.float64)))


class WrongShape(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1)

    def forward(self, x, labels):
        return self.conv(x)


class Fails(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize(
    ("network", "options", "message"),
    [
        (TupleNet(), {}, "returned a tuple of 2 items for input (2, 2, 8, 8); a denoiser needs a "
         "tensor of the input's shape: pass output=0"),
        (DictNet(), {}, "returned a dict with keys ['denoised'] for input (2, 2, 8, 8); a "
         "denoiser needs a tensor of the input's shape: pass output='denoised'"),
        (SampleNet(), {}, "returned a Output for input (2, 2, 8, 8); a denoiser needs a tensor "
         "of the input's shape: pass output='sample'"),
        (WrongShape(), {}, "returned a torch.float32 tensor of shape (2, 3, 8, 8) for input "
         "(2, 2, 8, 8)"),
        (SampleNet(), {"output": "denoised"}, "output='denoised' does not fit what SampleNet "
         "returned (a Output)"),
        (TupleNet(), {"output": 5}, "output=5 does not fit what TupleNet returned"),
        (Fails(), {}, "calling the wrapped Fails on input (2, 2, 8, 8) failed: TypeError"),
        (TupleNet(), {"output": 0, "top_modules": ["tail"]}, "TupleNet has no module named "
         "'tail'; valid names: body, body.0, body.1, head"),
        (TupleNet(), {"output": 0, "noise_label": "t"}, "unknown noise_label 't'"),
        (TupleNet(), {"output": 0, "kind": "eps"}, "unknown kind 'eps'"),
    ],
)  # fmt: skip
def test_a_wrong_interface_is_one_line_when_wrapping(network, options, message):
    with pytest.raises(PirfError) as error:
        wrap(network, shape=SHAPE, **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_probe_leaves_mode_and_random_state_alone():
    network = net()
    network.train()
    state = torch.random.get_rng_state()
    model = wrap(network, shape=SHAPE, output=0)
    assert model.training and network.training
    assert torch.equal(torch.random.get_rng_state(), state)


def test_top_modules_are_names_in_the_users_network():
    network = net()
    model = wrap(network, shape=SHAPE, output=0, top_modules=["head"])
    assert model.top_module_names() == ["backbone.network.head"]
    assert model.top_module_names(prefixes=["body.0"]) == ["backbone.network.body.0"]
    assert user_network(model) == ("backbone.network.", network)
    unet = preset_denoiser("tiny", channels=2, resolution=8, base_channels=8)
    assert user_network(unet) == ("backbone.", unet.backbone)
    assert unet.top_module_names(prefixes=["out_conv"]) == ["backbone.out_conv"]
    plain = PlainDenoiser()
    assert user_network(plain) == ("", plain)
    with pytest.raises(PirfError, match="TupleNet does not name its top layers; wrap it with"):
        wrap(net(), shape=SHAPE, output=0).top_module_names()


@pytest.mark.parametrize("factory", [FACTORY, TupleNet])
def test_checkpoint_round_trip_is_bitwise(tmp_path, factory):
    network = net()
    model = wrap(network, shape=SHAPE, output=first_item, noise_label=half_log_sigma,
                 top_modules=["head"], factory=factory, config={"width": 8})  # fmt: skip
    model = model.float()
    info = save_checkpoint(tmp_path / "ckpt", model)
    assert info.architecture["backbone"] == "wrapped"
    assert info.architecture["config"]["network"] == {"backbone": FACTORY, "config": {"width": 8}}
    with pytest.raises(PirfError, match="allow_import=True"):
        load_checkpoint(tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", allow_import=True).model
    x = fields().float()
    model.eval()
    assert torch.equal(loaded(x, SIGMA.float()), model(x, SIGMA.float()))
    assert loaded.top_module_names() == ["backbone.network.head"]
    torch.testing.assert_close(loaded.backbone.network.last_labels, SIGMA.float().log() / 2)


def test_a_complete_denoiser_round_trips_too(tmp_path):
    network = PlainDenoiser()
    model = wrap(network, shape=SHAPE, kind="denoiser",
                 factory="tests.models.toy_networks:PlainDenoiser")  # fmt: skip
    save_checkpoint(tmp_path / "ckpt", model)
    loaded = load_checkpoint(tmp_path / "ckpt", allow_import=True).model
    x = fields().float()
    assert torch.equal(loaded(x, SIGMA.float()), network(x, SIGMA.float()))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: wrap(net(), shape=SHAPE, output=0),
         "pirf cannot rebuild TupleNet: wrap it with factory='module:callable' and config="),
        (lambda: wrap(net(), shape=SHAPE, output=lambda v: v[0], factory=FACTORY),
         "cannot record output=<function"),
        (lambda: PlainDenoiser(), "save_checkpoint expects a pirf denoiser, got PlainDenoiser"),
    ],
)  # fmt: skip
def test_saving_what_cannot_be_rebuilt_is_refused_in_one_line(tmp_path, make, message):
    with pytest.raises(PirfError) as error:
        save_checkpoint(tmp_path / "ckpt", make())
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "ckpt").exists()


def test_factory_must_be_importable():
    with pytest.raises(PirfError, match="factory must be 'module:callable'"):
        wrap(net(), shape=SHAPE, output=0, factory=lambda: TupleNet())
    with pytest.raises(PirfError, match="config= needs factory="):
        wrap(net(), shape=SHAPE, output=0, config={"width": 8})
