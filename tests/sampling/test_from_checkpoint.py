"""Checkpoint -> samples file: dataset layout, physical units, snapping, seeds."""

import h5py
import numpy as np
import pytest
import torch

import pirf.data
import pirf.pdes
from pirf.errors import PirfError
from pirf.models import load_model, preset_denoiser, save_checkpoint
from pirf.pdes.normalisation import Normalisation
from pirf.sampling.from_checkpoint import sample_to_file


def make_checkpoint(path, pde_name, resolution=16):
    torch.manual_seed(0)
    pde = pirf.pdes.get(pde_name)
    model = preset_denoiser(
        "tiny", channels=len(pde.channels), resolution=resolution, base_channels=8
    )
    shift = tuple(7.5 if c == "a" and pde_name == "darcy" else 0.0 for c in pde.channels)
    normalisation = Normalisation(shift, tuple(9.0 if s else 0.1 for s in shift))
    save_checkpoint(path, model, pde=pde, normalisation=normalisation, resolution=resolution)
    return path


def test_samples_are_written_in_the_dataset_layout(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt", "poisson")
    summary = sample_to_file(checkpoint, tmp_path / "s.h5", n=5, seed=3, steps=3)
    assert summary["nfe_per_sample"] == 5 and summary["shape"] == [5, 2, 16, 16]
    report = pirf.data.check(tmp_path / "s.h5")
    assert report["pde"] == "poisson" and report["n"] == 5
    with h5py.File(tmp_path / "s.h5") as file:
        assert file.attrs["source"] == "model" and int(file.attrs["steps"]) == 3
        stored = np.asarray(file["fields"])
    model = load_model(checkpoint)
    # Physical units: the stored u channel is the model's output times the scale 0.1.
    again = sample_to_file(checkpoint, tmp_path / "t.h5", n=2, seed=3, steps=3, batch_size=1)
    with h5py.File(tmp_path / "t.h5") as file:
        np.testing.assert_array_equal(np.asarray(file["fields"]), stored[:2])
    assert again["batch_size"] == 1 and model.shape == (2, 16, 16)


def test_darcy_coefficient_is_snapped_unless_asked(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt", "darcy")
    sample_to_file(checkpoint, tmp_path / "snap.h5", n=3, steps=2)
    sample_to_file(checkpoint, tmp_path / "raw.h5", n=3, steps=2, snap=False)
    snapped = pirf.data.load(tmp_path / "snap.h5")[:]
    raw = pirf.data.load(tmp_path / "raw.h5")[:]
    assert set(snapped[:, 0].unique().tolist()) <= {3.0, 12.0}
    assert len(raw[:, 0].unique()) > 2
    torch.testing.assert_close(snapped[:, 1], raw[:, 1])


def test_refuses_to_overwrite_and_reports_missing_checkpoints(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt", "poisson")
    sample_to_file(checkpoint, tmp_path / "s.h5", n=1, steps=1)
    with pytest.raises(PirfError, match="exists"):
        sample_to_file(checkpoint, tmp_path / "s.h5", n=1, steps=1)
    with pytest.raises(PirfError):
        sample_to_file(tmp_path / "nowhere", tmp_path / "u.h5", n=1, steps=1)
    assert not (tmp_path / "u.h5").exists()
