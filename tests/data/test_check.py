"""``check`` reports exact residual statistics and refuses non-finite data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import pirf.data
from pirf.errors import PirfError
from tests.data.toy_pdes import ResidualOnly, Toy


def _offset_fields(offsets: list[float], resolution: int = 6) -> torch.Tensor:
    """Toy fields whose residual is exactly ``offsets[i]`` at every node of sample i
    (all values are exact in float32)."""
    a = (torch.arange(resolution * resolution, dtype=torch.float64) % 9 - 4) / 4
    a = a.reshape(1, 1, resolution, resolution).expand(len(offsets), 1, -1, -1)
    c = torch.tensor(offsets, dtype=torch.float64).view(-1, 1, 1, 1)
    return torch.cat([a, a**2 + c], dim=1)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_residual_statistics_are_exact(tmp_path, batch_size):
    offsets = [0.0, -0.5, 1.0, 2.0, 0.25, -3.0, 0.0, 8.0, 0.5, 1.5]
    fields = _offset_fields(offsets)
    pirf.data.write_fields(tmp_path / "f.h5", fields, Toy())
    report = pirf.data.check(tmp_path / "f.h5", batch_size=batch_size)
    mse = np.square(offsets)
    mae = np.abs(offsets)
    residual = report["residual"]
    assert residual["points"] == 36
    assert residual["mse"] == pytest.approx(mse.mean(), rel=1e-12)
    assert residual["mae"] == pytest.approx(mae.mean(), rel=1e-12)
    assert residual["mse_median"] == pytest.approx(np.median(mse), rel=1e-12)
    assert residual["mse_p90"] == pytest.approx(np.percentile(mse, 90), rel=1e-12)
    assert residual["mae_median"] == pytest.approx(np.median(mae), rel=1e-12)
    assert residual["mae_p90"] == pytest.approx(np.percentile(mae, 90), rel=1e-12)
    assert report["n"] == 10 and report["shape"] == [10, 2, 6, 6] and report["resolution"] == 6
    assert report["channels"] == ["a", "u"] and report["pde"] == "toy"
    flat = fields.transpose(0, 1).reshape(2, -1)
    for index, name in enumerate(["a", "u"]):
        stats = report["channel_stats"][name]
        assert stats["mean"] == pytest.approx(flat[index].mean().item(), rel=1e-12)
        assert stats["std"] == pytest.approx(flat[index].std(correction=0).item(), rel=1e-12)
        assert stats["min"] == flat[index].min().item()
        assert stats["max"] == flat[index].max().item()


def test_generated_data_has_a_float32_level_residual(toy_file):
    report = pirf.data.check(toy_file)
    # u = 2 a^2 with |u| < ~60 stored in float32: pointwise errors ~ 60 * 2^-24
    assert report["residual"]["mse"] < 1e-11
    assert report["residual"]["mae_p90"] < 1e-5
    assert report["seed"] == 5 and report["split"] == "train" and report["source"] == "solver"


def test_a_pde_that_cannot_generate_can_still_be_checked(tmp_path):
    fields = torch.full((3, 1, 5, 5), 2.0)
    pirf.data.write_fields(tmp_path / "r.h5", fields, ResidualOnly())
    report = pirf.data.check(tmp_path / "r.h5")
    assert report["residual"]["mse"] == 4.0 and report["residual"]["mae"] == 2.0


def test_nan_in_a_stored_sample_is_reported_by_index(toy_file):
    with h5py.File(toy_file, "r+") as file:
        file["fields"][7, 1, 2, 3] = np.nan
    with pytest.raises(PirfError, match="sample 7 holds NaN or inf"):
        pirf.data.check(toy_file, batch_size=5)


def test_bad_check_options(toy_file):
    with pytest.raises(PirfError, match="batch size must be positive"):
        pirf.data.check(toy_file, batch_size=0)
    with pytest.raises(PirfError, match="device"):
        pirf.data.check(toy_file, device="quantum")
