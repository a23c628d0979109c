"""The file layout: writing, reading back (with pirf and with h5py alone), and refusing
files that are missing, corrupt, truncated or not pirf datasets."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import torch

import pirf.data
from pirf.data.format import FORMAT_VERSION
from pirf.errors import PirfError
from pirf.pdes.normalisation import Normalisation
from tests.data.toy_pdes import Toy, Unregistered


def _toy_fields(n: int, resolution: int = 6, scale: float = 1.0) -> torch.Tensor:
    a = torch.linspace(-2, 2, n * resolution * resolution, dtype=torch.float64)
    a = a.reshape(n, 1, resolution, resolution)
    return torch.cat([a, scale * a**2], dim=1)


def test_written_file_reads_back_with_h5py_alone(tmp_path):
    """What docs/data-format.md promises a reader without pirf."""
    fields = _toy_fields(5)
    summary = pirf.data.write_fields(tmp_path / "s.h5", fields, Toy(), attrs={"steps": 20})
    assert summary.n == 5 and summary.shape == (5, 2, 6, 6)
    with h5py.File(tmp_path / "s.h5", "r") as file:
        stored = file["fields"]
        assert stored.dtype == np.float32 and stored.shape == (5, 2, 6, 6)
        assert stored.chunks == (1, 2, 6, 6) and stored.compression is None and stored.fletcher32
        attrs = file.attrs
        assert attrs["format"] == "pirf-fields" and attrs["format_version"] == FORMAT_VERSION
        assert attrs["pde"] == "toy" and json.loads(attrs["channels"]) == ["a", "u"]
        assert json.loads(attrs["input_channels"]) == ["a"]
        assert json.loads(attrs["params"])["scale"] == 1.0
        assert json.loads(attrs["grid"])["endpoint"] == [True, True]
        assert attrs["resolution"] == 6 and attrs["steps"] == 20 and attrs["source"] == "user"
        assert attrs["norm_shift"].dtype == np.float64 and attrs["norm_shift"].shape == (2,)
        values = stored[:]
        shift = attrs["norm_shift"][None, :, None, None]
        scale = attrs["norm_scale"][None, :, None, None]
    assert np.array_equal(values, fields.float().numpy())
    model = (values - shift) / scale
    np.testing.assert_allclose(model.mean(axis=(0, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(model.std(axis=(0, 2, 3)), 0.5, rtol=1e-5)


def test_chunks_given_normalisation_and_compression(tmp_path):
    fields = _toy_fields(7)
    norm = Normalisation((1.0, 2.0), (3.0, 4.0))
    summary = pirf.data.write_fields(
        tmp_path / "s.h5",
        iter(fields.split(3)),
        Toy(),
        normalisation=norm,
        attrs={"source": "model"},
        compression="lzf",
    )
    data = pirf.data.load(tmp_path / "s.h5")
    assert data.normalisation == norm == summary.normalisation
    assert data.attrs["source"] == "model" and len(data) == 7
    assert torch.equal(data.fields(), fields.float())
    with h5py.File(tmp_path / "s.h5", "r") as file:
        assert file["fields"].compression == "lzf"


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([_toy_fields(2), _toy_fields(2, resolution=8)], "all chunks must have shape"),
        ([_toy_fields(2)[:, :1]], "expects fields"),
        ([_toy_fields(2), _toy_fields(1) / 0], "sample 2 holds NaN or inf"),
        ([torch.full((1, 2, 6, 6), 1e39, dtype=torch.float64)], "NaN or inf"),
        ([], "no samples"),
    ],
)
def test_bad_fields_are_refused_and_leave_no_file(tmp_path, chunks, message):
    with pytest.raises(PirfError, match=message):
        pirf.data.write_fields(tmp_path / "s.h5", iter(chunks), Toy())
    assert list(tmp_path.iterdir()) == []


def test_reserved_attributes_cannot_be_replaced(tmp_path):
    with pytest.raises(PirfError, match="may not replace norm_shift"):
        pirf.data.write_fields(tmp_path / "s.h5", _toy_fields(1), Toy(), attrs={"norm_shift": 0})
    assert list(tmp_path.iterdir()) == []


def test_loaded_dataset_indexing_and_torch_views(toy_file):
    data = pirf.data.load(toy_file)
    everything = data.fields()
    assert isinstance(data.pde, Toy) and data.pde.params["scale"] == 2.0
    assert (data.resolution, data.seed, data.split, len(data)) == (8, 5, "train", 12)
    assert data.channels == ("a", "u") and data.input_channels == ("a",)
    assert torch.equal(data[3], everything[3]) and torch.equal(data[-1], everything[11])
    assert torch.equal(data[2:5], everything[2:5]) and torch.equal(data[::4], everything[::4])
    assert torch.equal(data[[7, 1, 7]], everything[[7, 1, 7]])
    assert torch.equal(data[np.array([0, 11])], everything[[0, 11]])
    assert data[5:5].shape == (0, 2, 8, 8)
    with pytest.raises(IndexError):
        data[12]
    with pytest.raises(IndexError):
        data[[0, 12]]
    assert torch.equal(torch.cat([f for _, f in data.batches(5)]), everything)
    normalised = data.torch_dataset()
    lazy = data.torch_dataset(in_memory=False)
    physical = data.torch_dataset(normalised=False)
    assert len(normalised) == 12
    assert torch.allclose(normalised[4], data.normalisation.to_model(everything[4]))
    assert torch.equal(lazy[4], normalised[4]) and torch.equal(physical[4], everything[4])
    loader = torch.utils.data.DataLoader(normalised, batch_size=5, shuffle=False)
    assert next(iter(loader)).shape == (5, 2, 8, 8)
    copy = pickle.loads(pickle.dumps(data))
    assert torch.equal(copy[2], everything[2])
    data.close()
    assert torch.equal(data[0], everything[0])  # reopens on demand


def test_lazy_reads_work_in_dataloader_worker_processes(toy_file):
    data = pirf.data.load(toy_file)
    data[0]  # the parent holds an open handle; workers must open their own
    lazy = data.torch_dataset(in_memory=False)
    loader = torch.utils.data.DataLoader(lazy, batch_size=4, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), data.normalisation.to_model(data.fields()))


def test_the_residual_of_a_loaded_file_is_one_call_away(toy_file):
    data = pirf.data.load(toy_file)
    residual = data.pde.residual(data[:4].double())
    assert residual.shape == (4, 1, 8, 8) and residual.abs().max() < 1e-5


def test_pde_class_is_found_by_import_when_its_name_is_not_registered(tmp_path):
    pirf.data.write_fields(tmp_path / "s.h5", _toy_fields(2), Unregistered(scale=4.0))
    data = pirf.data.load(tmp_path / "s.h5")
    assert isinstance(data.pde, Unregistered) and data.pde.params["scale"] == 4.0


def _edit(path, **attrs) -> None:
    with h5py.File(path, "r+") as file:
        for name, value in attrs.items():
            if value is None:
                del file.attrs[name]
            else:
                file.attrs[name] = value


def test_unknown_stored_pde_is_a_clear_error(toy_file):
    _edit(toy_file, pde="navier-stokes-3d", pde_class="nowhere.module:Missing")
    with pytest.raises(
        PirfError,
        match=r"toy.h5: unknown PDE 'navier-stokes-3d', made with nowhere.module:Missing, which "
        r"does not import here .*--plugin MODULE",
    ):
        pirf.data.load(toy_file)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"format": None}, "HDF5 file but not a pirf dataset"),
        ({"norm_scale": None}, r"missing attribute\(s\) \['norm_scale'\]"),
        ({"format_version": FORMAT_VERSION + 1}, "newer than this pirf reads"),
        ({"channels": json.dumps(["a"])}, "channels .* do not match"),
        ({"resolution": 9}, "resolution 9 does not match"),
        ({"params": "{not json"}, "bad attribute"),
        ({"params": json.dumps({"viscosity": 1.0})}, "unknown parameter"),
        ({"norm_scale": np.array([1.0, -1.0])}, "scale must be positive"),
        ({"channels": json.dumps(["x", "y"])}, r"stored channels \['x', 'y'\] differ"),
    ],
)
def test_invalid_headers_are_refused(toy_file, edit, message):
    _edit(toy_file, **edit)
    with pytest.raises(PirfError, match=message):
        pirf.data.load(toy_file)


def test_missing_directory_text_and_foreign_hdf5_files(tmp_path):
    with pytest.raises(PirfError, match="no such file"):
        pirf.data.load(tmp_path / "nope.h5")
    with pytest.raises(PirfError, match="is a directory"):
        pirf.data.load(tmp_path)
    (tmp_path / "text.h5").write_text("not hdf5\n")
    with pytest.raises(PirfError, match="is not an HDF5 file"):
        pirf.data.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["fields"] = np.zeros((1, 2, 8, 8), dtype=np.float32)
    with pytest.raises(PirfError, match="not a pirf dataset"):
        pirf.data.load(tmp_path / "other.h5")


def test_truncated_file_is_refused(toy_file):
    data = toy_file.read_bytes()
    toy_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(PirfError, match="corrupt or truncated"):
        pirf.data.load(toy_file)


def test_corrupted_sample_bytes_are_detected_by_checksums(toy_file):
    with h5py.File(toy_file, "r") as file:
        info = file["fields"].id.get_chunk_info(3)
    with open(toy_file, "r+b") as raw:
        raw.seek(info.byte_offset + 17)
        byte = raw.read(1)
        raw.seek(info.byte_offset + 17)
        raw.write(bytes([byte[0] ^ 0x40]))
    data = pirf.data.load(toy_file)
    assert data[2].shape == (2, 8, 8)  # intact samples still read
    with pytest.raises(PirfError, match="corrupt or truncated"):
        data[3]
