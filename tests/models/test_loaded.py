"""Opening a model: which weights, which checkpoint of a run directory, and what is refused."""

import hashlib

import pytest
import torch

import pirf.pdes
from pirf.errors import PirfError
from pirf.finetune import BEST
from pirf.models import (
    LoadedModel,
    load_model,
    preset_denoiser,
    resolve_checkpoint,
    save_checkpoint,
)
from pirf.models import loaded as loaded_module
from pirf.pdes.normalisation import Normalisation
from pirf.training import rundir

PDE = pirf.pdes.get("poisson")
NORM = Normalisation((0.1, -0.2), (2.0, 0.5))


def denoiser(seed: int):
    torch.manual_seed(seed)
    return preset_denoiser("tiny", channels=2, resolution=8, base_channels=8)


def save(path, *, ema: bool = True, seed: int = 0, **metadata):
    """A checkpoint whose model and EMA weights differ (seeds ``seed`` and ``seed + 1``)."""
    if not metadata:
        metadata = {"pde": PDE, "normalisation": NORM, "resolution": 8}
    ema_model = denoiser(seed + 1) if ema else None
    save_checkpoint(path, denoiser(seed), ema=ema_model, **metadata)
    return path


def first_weight(model: torch.nn.Module) -> torch.Tensor:
    return next(model.parameters()).detach()


def test_a_checkpoint_opens_with_its_ema_weights_pde_and_shape(tmp_path):
    path = save(tmp_path / "ckpt")
    model = load_model(path)
    assert isinstance(model, LoadedModel)
    assert (model.kind, model.path, model.shape, model.resolution) == (
        "checkpoint",
        path,
        (2, 8, 8),
        (8, 8),
    )
    assert model.pde.name == "poisson" and model.normalisation == NORM
    assert torch.equal(first_weight(model.denoiser), first_weight(denoiser(1)))
    assert not model.denoiser.training and model.denoiser.bf16
    # The hash identifies the checkpoint: it is that of its checkpoint.json, computed here.
    assert model.sha256 == hashlib.sha256((path / "checkpoint.json").read_bytes()).hexdigest()
    assert first_weight(load_model(path, float32=True).denoiser).dtype == torch.float32
    raw = load_model(path, ema=False, bf16=False)
    assert torch.equal(first_weight(raw.denoiser), first_weight(denoiser(0)))
    assert not raw.denoiser.bf16
    # Without an EMA file the trained weights are used whatever ``ema`` says.
    plain = load_model(save(tmp_path / "plain", ema=False, seed=4))
    assert torch.equal(first_weight(plain.denoiser), first_weight(denoiser(4)))


def test_a_run_directory_resolves_to_its_best_then_its_final_checkpoint(tmp_path):
    # The names are those the training and fine-tuning runs write.
    assert (loaded_module.BEST, loaded_module.FINAL) == (BEST, rundir.FINAL)
    run = tmp_path / "run"
    save(run / "checkpoint", seed=0)
    assert resolve_checkpoint(run) == (run / "checkpoint", "final")
    save(run / "best", seed=2)
    assert resolve_checkpoint(run) == (run / "best", "best")
    model = load_model(run)
    assert (model.kind, model.path) == ("best", run / "best")
    assert torch.equal(first_weight(model.denoiser), first_weight(denoiser(3)))
    assert resolve_checkpoint(run / "checkpoint") == (run / "checkpoint", "checkpoint")


def test_what_is_not_a_checkpoint_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PirfError, match=r"no checkpoint\.json and no best/ or checkpoint/") as info:
        load_model(tmp_path / "empty")
    assert "\n" not in str(info.value)
    with pytest.raises(PirfError, match="no such checkpoint directory"):
        resolve_checkpoint(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(PirfError, match="is a directory"):
        resolve_checkpoint(tmp_path / "file")
    bare = save(tmp_path / "bare", resolution=8)
    with pytest.raises(PirfError, match="lacks its PDE, normalisation or resolution"):
        load_model(bare)
