"""User backbones: the architecture registry and explicit module naming."""

import pytest
import torch
from torch import nn

from pirf.errors import PirfError
from pirf.models import (
    EDMDenoiser,
    backbone_names,
    build_backbone,
    build_denoiser,
    parameters_under,
    register_backbone,
    top_module_names,
)


class PlainNet(nn.Module):
    """A user backbone with no knowledge of pirf."""

    def __init__(self, channels: int = 2, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Conv2d(channels + 1, width, 3, padding=1)
        self.head = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        label_plane = labels.reshape(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        return self.head(torch.relu(self.body(torch.cat([x, label_plane], dim=1))))


def make_plain(channels: int = 2, width: int = 4) -> PlainNet:
    return PlainNet(channels, width)


def not_a_module(**_: int) -> str:
    return "nope"


def test_unet_is_built_in():
    assert "unet" in backbone_names()
    net = build_backbone(
        {
            "backbone": "unet",
            "config": {"in_channels": 1, "base_channels": 8, "channel_mult": [1, 2]},
        }
    )
    assert net(torch.randn(1, 1, 4, 4), torch.zeros(1)).shape == (1, 1, 4, 4)


def test_registered_backbone_builds_and_wraps():
    register_backbone("plain-test", make_plain, replace=True)
    architecture = {"backbone": "plain-test", "config": {"channels": 3, "width": 5}}
    denoiser = build_denoiser(architecture)
    assert denoiser.architecture == architecture
    assert denoiser(torch.randn(2, 3, 6, 6), 0.3).shape == (2, 3, 6, 6)
    with pytest.raises(PirfError, match="already registered"):
        register_backbone("plain-test", make_plain)


def test_importable_factory_needs_explicit_permission():
    architecture = {"backbone": f"{__name__}:make_plain", "config": {"width": 3}}
    with pytest.raises(PirfError, match="run code outside pirf"):
        build_backbone(architecture)
    assert isinstance(build_backbone(architecture, allow_import=True), PlainNet)
    with pytest.raises(PirfError, match="did not return an nn"):
        build_backbone({"backbone": f"{__name__}:not_a_module"}, allow_import=True)
    with pytest.raises(PirfError, match="cannot import"):
        build_backbone({"backbone": "no_such_module_xyz:f"}, allow_import=True)


@pytest.mark.parametrize(
    "architecture",
    [
        {"backbone": "nonexistent"},
        {"config": {}},
        {"backbone": "unet", "config": [1]},
        {"backbone": "unet", "config": {"in_channels": 1, "depth": 3}},
        {"backbone": "unet", "config": {"in_channels": 1}, "weights": "x"},
    ],
)
def test_bad_architectures_are_one_line_errors(architecture):
    with pytest.raises(PirfError) as error:
        build_backbone(architecture)
    assert "\n" not in str(error.value)


def test_user_backbone_modules_are_named_explicitly():
    denoiser = EDMDenoiser(PlainNet())
    with pytest.raises(PirfError, match="list the module names"):
        top_module_names(denoiser.backbone)
    names = denoiser.top_module_names(prefixes=["head"])
    assert names == ["backbone.head"]
    assert [n for n, _ in parameters_under(denoiser, names)] == [
        "backbone.head.weight",
        "backbone.head.bias",
    ]
    with pytest.raises(PirfError, match="no module named 'tail'"):
        denoiser.top_module_names(prefixes=["tail"])
    # A prefix selects whole submodules, not names that merely start with the same letters.
    assert parameters_under(denoiser.backbone, ["body"]) == [
        ("body.weight", denoiser.backbone.body.weight),
        ("body.bias", denoiser.backbone.body.bias),
    ]
