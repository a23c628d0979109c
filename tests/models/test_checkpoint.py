"""Checkpoint directories: exact round trips, atomic replacement, and every failure mode."""

import json
import math
import os
import pickle

import pytest
import torch

from pirf.errors import PirfError
from pirf.models import (
    EDMDenoiser,
    UNet,
    UNetConfig,
    check_matches,
    edm_loss,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
    verify_checkpoint,
)
from pirf.models.checkpoint import flatten_state, unflatten_state
from pirf.pdes.normalisation import Normalisation

CONFIG = UNetConfig(
    in_channels=2, base_channels=8, channel_mult=(1, 2), blocks_per_level=1, dropout=0.0
)
PDE_META = {
    "pde": "poisson",
    "channels": ["a", "u"],
    "input_channels": ["a"],
    "params": {"k": 1.0},
    "grid": {"axes": ["x", "y"]},
}
NORM = Normalisation((0.1, -0.2), (2.0, 0.05))


def trained(steps: int = 2):
    """A small denoiser, its EMA copy and an Adam optimizer with a populated state."""
    torch.manual_seed(0)
    model = EDMDenoiser(UNet(CONFIG))
    ema = EDMDenoiser(UNet(CONFIG))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(4, 2, 8, 8, generator=generator)
    for _ in range(steps):
        optimizer.zero_grad()
        edm_loss(model, data, generator=generator).mean().backward()
        optimizer.step()
    with torch.no_grad():
        for target, source in zip(ema.parameters(), model.parameters(), strict=True):
            target.copy_(0.5 * source)
    return model, ema, optimizer, data


def save(path, model, ema=None, optimizer=None, **kwargs):
    return save_checkpoint(
        path,
        model,
        ema=ema,
        optimizer=optimizer,
        pde=PDE_META,
        normalisation=NORM,
        resolution=8,
        training={"lr": 1e-3, "batch": 4},
        counters={"step": 2},
        **kwargs,
    )


def assert_same_structure(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_structure(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_structure(x, y)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, ema, optimizer, data = trained()
    path = tmp_path_factory.mktemp("ckpt") / "base"
    save(path, model, ema, optimizer)
    return path, model, ema, optimizer, data


def test_round_trip_is_bitwise(saved):
    path, model, ema, optimizer, _ = saved
    loaded = load_checkpoint(path)
    for original, restored in ((model, loaded.model), (ema, loaded.ema)):
        state, again = original.backbone.state_dict(), restored.backbone.state_dict()
        assert list(state) == list(again)
        for name in state:
            assert torch.equal(state[name], again[name]), name
    assert_same_structure(optimizer.state_dict(), loaded.optimizer_state)
    info = loaded.info
    assert info.architecture == model.architecture and info.sigma_data == 0.5
    assert info.pde == PDE_META and info.normalisation == NORM and info.resolution == (8, 8)
    assert info.training == {"lr": 1e-3, "batch": 4} and info.counters == {"step": 2}
    assert not loaded.model.training


def test_resumed_optimizer_continues_identically(tmp_path):
    model, _, optimizer, data = trained()
    save(tmp_path / "run", model, optimizer=optimizer)
    loaded = load_checkpoint(tmp_path / "run")
    resumed = torch.optim.Adam(loaded.model.parameters(), lr=1.0)
    resumed.load_state_dict(loaded.optimizer_state)
    loaded.model.train()
    for net, opt in ((model, optimizer), (loaded.model, resumed)):
        opt.zero_grad()
        edm_loss(net, data, generator=torch.Generator().manual_seed(5)).mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), loaded.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loading_never_unpickles(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("code-executing deserialisation was used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    load_checkpoint(saved[0])


def test_optional_parts_and_partial_loading(tmp_path, saved):
    model = saved[1]
    save(tmp_path / "plain", model)
    loaded = load_checkpoint(tmp_path / "plain")
    assert loaded.ema is None and loaded.optimizer_state is None
    skipped = load_checkpoint(saved[0], ema=False, optimizer=False)
    assert skipped.ema is None and skipped.optimizer_state is None


def test_save_is_atomic_and_overwrites_only_when_asked(tmp_path, saved):
    model = saved[1]
    save(tmp_path / "ckpt", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == 0o777 & ~mask
    with pytest.raises(PirfError, match="already exists"):
        save(tmp_path / "ckpt", model)
    info = save_checkpoint(tmp_path / "ckpt", model, counters={"step": 9}, overwrite=True)
    assert read_checkpoint_info(tmp_path / "ckpt").counters == {"step": 9} == info.counters
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    other = tmp_path / "notes"
    other.mkdir()
    with pytest.raises(PirfError, match="not a pirf checkpoint"):
        save(other, model, overwrite=True)
    # A failure while writing leaves nothing behind.
    with pytest.raises(PirfError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "bad", model, training={"fn": print})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "notes"]


def test_architecture_is_required_for_foreign_backbones(tmp_path):
    class Foreign(torch.nn.Module):
        def forward(self, x, labels):
            return x

    with pytest.raises(PirfError, match="cannot describe the architecture"):
        save_checkpoint(tmp_path / "x", EDMDenoiser(Foreign()))


def copy_checkpoint(source, destination):
    destination.mkdir()
    for file in source.iterdir():
        (destination / file.name).write_bytes(file.read_bytes())
    return destination


def one_line_error(path, **kwargs):
    with pytest.raises(PirfError) as error:
        load_checkpoint(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_truncated_tampered_and_missing_files(tmp_path, saved):
    source = saved[0]
    truncated = copy_checkpoint(source, tmp_path / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert "truncated" in one_line_error(truncated)

    tampered = copy_checkpoint(source, tmp_path / "tampered")
    data = bytearray((tampered / "optimizer.safetensors").read_bytes())
    data[-1] ^= 0x01
    (tampered / "optimizer.safetensors").write_bytes(bytes(data))
    assert "optimizer.safetensors does not match" in one_line_error(tampered)
    with pytest.raises(PirfError):
        verify_checkpoint(tampered)

    missing = copy_checkpoint(source, tmp_path / "missing")
    (missing / "ema.safetensors").unlink()
    assert "ema.safetensors is missing" in one_line_error(missing)


def rewrite_info(path, change):
    data = json.loads((path / "checkpoint.json").read_text())
    change(data)
    (path / "checkpoint.json").write_text(json.dumps(data))


def test_description_that_does_not_fit_the_weights(tmp_path, saved):
    wider = copy_checkpoint(saved[0], tmp_path / "wider")
    rewrite_info(wider, lambda d: d["architecture"]["config"].update(base_channels=12))
    assert "does not fit the architecture" in one_line_error(wider)

    foreign = copy_checkpoint(saved[0], tmp_path / "foreign")
    rewrite_info(foreign, lambda d: d["architecture"].update(backbone="os:system"))
    assert "run code outside pirf" in one_line_error(foreign)

    newer = copy_checkpoint(saved[0], tmp_path / "newer")
    rewrite_info(newer, lambda d: d.update(format_version=99))
    assert "upgrade pirf" in one_line_error(newer)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{}", "not a pirf checkpoint"),
        ("[1, 2]", "not a pirf checkpoint"),
        ("{not json", "cannot read"),
        ('{"format": "pirf-checkpoint", "format_version": 1}', "architecture"),
        (
            '{"format": "pirf-checkpoint", "format_version": 1, '
            '"architecture": {"backbone": "unet", "config": {}}, "files": {}}',
            "lacks model.safetensors",
        ),
    ],
)
def test_json_that_is_not_a_checkpoint(tmp_path, content, expected):
    (tmp_path / "checkpoint.json").write_text(content)
    assert expected in one_line_error(tmp_path)


def test_paths_that_are_not_checkpoints(tmp_path):
    assert "does not exist" in one_line_error(tmp_path / "nothing")
    (tmp_path / "file.pt").write_bytes(b"\x80\x04")
    assert "is a directory" in one_line_error(tmp_path / "file.pt")
    assert "no checkpoint.json" in one_line_error(tmp_path)


def test_check_matches_names_the_mismatch(saved):
    info = read_checkpoint_info(saved[0])
    check_matches(info, pde="poisson", channels=("a", "u"), resolution=8, params={"k": 1.0})
    with pytest.raises(PirfError, match="PDE mismatch: checkpoint is for 'poisson'"):
        check_matches(info, pde="darcy", channels=("a", "u"), resolution=8)
    with pytest.raises(PirfError, match="channel mismatch"):
        check_matches(info, pde="poisson", channels=("u", "a"), resolution=8)
    with pytest.raises(PirfError, match=r"resolution mismatch: .* 8x8, dataset is 16x16"):
        check_matches(info, pde="poisson", channels=("a", "u"), resolution=16)
    with pytest.raises(PirfError, match="parameter mismatch: k"):
        check_matches(info, pde="poisson", channels=("a", "u"), resolution=8, params={"k": 2.0})


def test_state_flattening_round_trips_awkward_values():
    state = {
        "state": {0: {"step": torch.tensor(3.0), "m": torch.arange(4, dtype=torch.int16)}},
        "param_groups": [
            {
                "betas": (0.9, 0.999),
                "lr": float("nan"),
                "flag": None,
                "params": [0],
                "name": "x",
                "eps": float("inf"),
            }
        ],
    }
    tensors = {}
    encoded = flatten_state(state, tensors)
    decoded = unflatten_state(json.loads(json.dumps(encoded, allow_nan=False)), tensors)
    assert_same_structure(state, decoded)
    with pytest.raises(PirfError, match="cannot store"):
        flatten_state({"f": object()}, {})
