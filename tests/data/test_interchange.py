"""Community data: pirf files exported to PDEBench and The Well come back bit for bit, and
hand-built files in each documented layout import onto the right channels."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pirf.data
import pirf.pdes
from pirf.errors import PirfError
from tests.data.toy_pdes import Frames, Pair, ResidualOnly, Toy


@pytest.fixture(autouse=True)
def toy_pdes() -> None:
    for pde_class in (Toy, ResidualOnly, Frames, Pair):
        pirf.pdes.register(pde_class, replace=True)


def _written(path: Path, pde: pirf.pdes.PDE, n: int = 3, resolution: int = 8) -> Path:
    generator = torch.Generator().manual_seed(7)
    fields = torch.randn(n, len(pde.channels), resolution, resolution, generator=generator)
    pirf.data.write_fields(path, fields, pde, attrs={"source": "model", "sampler": "heun"})
    return path


def _original(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.h5"
    if case == "toy":  # one input and one solution channel: PDEBench's Darcy layout
        pirf.data.generate("toy", 5, 8, 3, path, params={"scale": 2.5}, split="val")
    elif case == "burgers":  # the (t, x) grid
        pirf.data.generate("burgers", 2, 8, 0, path)
    elif case == "frames":
        _written(path, Frames())
    elif case == "pair":
        _written(path, Pair(weight=2.0, label="y"))
    else:
        _written(path, ResidualOnly())
    return path


CASES = ["toy", "burgers", "frames", "pair", "single"]


@pytest.mark.parametrize("format", ["pdebench", "the-well"])
@pytest.mark.parametrize("case", CASES)
def test_export_then_import_is_exact(tmp_path, format, case):
    original = _original(tmp_path, case)
    exported = pirf.data.export_fields(original, tmp_path / "x.hdf5", format=format)
    assert exported.n == len(pirf.data.load(original))
    summary = pirf.data.import_fields(tmp_path / "x.hdf5", tmp_path / "back.h5", format=format)
    assert summary.restored and summary.grid_matches is True
    before, after = pirf.data.load(original), pirf.data.load(tmp_path / "back.h5")
    assert torch.equal(before.fields(), after.fields())
    assert after.fields().dtype == torch.float32
    assert after.pde.name == before.pde.name and after.params == before.params
    assert after.normalisation == before.normalisation
    assert after.header.grid == before.header.grid
    for name in ("seed", "split", "source", "preset", "sampler", "samples_per_unit"):
        assert after.attrs.get(name) == before.attrs.get(name), name
    assert after.attrs["import_format"] == format and after.attrs["import_source"] == "x.hdf5"


def test_exports_follow_each_layout(tmp_path):
    toy = _original(tmp_path, "toy")
    pirf.data.export_fields(toy, tmp_path / "p.hdf5", format="pdebench")
    with h5py.File(tmp_path / "p.hdf5") as file:
        assert file["nu"].shape == (5, 8, 8) and file["tensor"].shape == (5, 1, 8, 8)
        assert np.allclose(file["x-coordinate"][()], np.linspace(0, 1, 8))
        assert file.attrs["pirf_pde"] == "toy"
    pirf.data.export_fields(toy, tmp_path / "w.hdf5", format="the-well")
    with h5py.File(tmp_path / "w.hdf5") as file:
        assert file.attrs["dataset_name"] == "toy" and file.attrs["n_spatial_dims"] == 2
        assert file.attrs["n_trajectories"] == 5 and file.attrs["scale"] == 2.5
        assert "scale" in list(file.attrs["simulation_parameters"].astype(str))
        assert file["t0_fields/a"].shape == (5, 8, 8)
        assert not file["t0_fields/u"].attrs["time_varying"]
        assert list(file["dimensions"].attrs["spatial_dims"].astype(str)) == ["x", "y"]
        assert file["boundary_conditions/x_wall"].attrs["bc_type"] == "WALL"
        assert file["boundary_conditions/x_wall/mask"][()].sum() == 2
    frames = _original(tmp_path, "frames")
    pirf.data.export_fields(frames, tmp_path / "f.hdf5", format="the-well")
    pirf.data.export_fields(frames, tmp_path / "f-pb.hdf5", format="pdebench")
    with h5py.File(tmp_path / "f.hdf5") as a, h5py.File(tmp_path / "f-pb.hdf5") as b:
        assert a["t0_fields/w"].shape == (3, 3, 8, 8) and a["t0_fields/w"].attrs["time_varying"]
        assert b["tensor"].shape == (3, 3, 8, 8)
    burgers = _original(tmp_path, "burgers")
    pirf.data.export_fields(burgers, tmp_path / "b.hdf5", format="the-well")
    with h5py.File(tmp_path / "b.hdf5") as file:
        assert file.attrs["n_spatial_dims"] == 1 and file["t0_fields/u"].shape == (2, 8, 8)
        assert file["dimensions/time"].shape == (8,)
        assert file["boundary_conditions/x_periodic"].attrs["bc_type"] == "PERIODIC"


def test_an_exported_darcy_dataset_scores_the_same_residual(tmp_path):
    original = tmp_path / "darcy.h5"
    pirf.data.generate("darcy", 2, 16, 0, original)
    floor = pirf.data.check(original)["residual"]
    for format in ("pdebench", "the-well"):
        pirf.data.export_fields(original, tmp_path / f"{format}.hdf5", format=format)
        pirf.data.import_fields(
            tmp_path / f"{format}.hdf5", tmp_path / f"{format}.h5", format=format, pde="darcy"
        )
        report = pirf.data.check(tmp_path / f"{format}.h5")
        assert report["residual"] == floor
        assert report["imported"]["grid_matches"] is True


# ------------------------------------------------------------------------ hand-built files
def _poisson_on(points: np.ndarray, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``u = sin(pi x) sin(pi y)`` and ``a = lap u`` sampled at ``points`` on both axes."""
    x, y = np.meshgrid(points, points, indexing="ij")
    u = np.sin(math.pi * x) * np.sin(math.pi * y)
    a = -2 * math.pi**2 * u
    return np.repeat(a[None], n, 0).astype(np.float32), np.repeat(u[None], n, 0).astype(np.float32)


def _pdebench_darcy(path: Path, points: np.ndarray) -> Path:
    a, u = _poisson_on(points)
    with h5py.File(path, "w") as file:
        file["nu"] = a
        file["tensor"] = u[:, None]
        file["x-coordinate"] = points.astype(np.float32)
        file["y-coordinate"] = points.astype(np.float32)
    return path


def test_pdebench_darcy_layout_and_a_grid_that_is_not_pirfs(tmp_path):
    resolution = 32
    nodes = np.linspace(0, 1, resolution)
    centres = (np.arange(resolution) + 0.5) / resolution
    good = pirf.data.import_fields(
        _pdebench_darcy(tmp_path / "nodes.hdf5", nodes), tmp_path / "nodes.h5",
        format="pdebench", pde="poisson",
    )  # fmt: skip
    bad = pirf.data.import_fields(
        _pdebench_darcy(tmp_path / "centres.hdf5", centres), tmp_path / "centres.h5",
        format="pdebench", pde="poisson",
    )  # fmt: skip
    assert good.channels == {"a": "nu", "u": "tensor[:, 0]"}
    assert good.grid_matches is True and bad.grid_matches is False
    assert bad.grid[0]["source"].startswith("cell centres")
    assert good.grid[0]["pirf"].startswith("x: 32 nodes including the boundary")
    with h5py.File(tmp_path / "nodes.hdf5") as file:
        assert np.array_equal(pirf.data.load(tmp_path / "nodes.h5").fields()[:, 0], file["nu"][()])
    node_check = pirf.data.check(tmp_path / "nodes.h5")
    centre_check = pirf.data.check(tmp_path / "centres.h5")
    assert centre_check["imported"]["grid_matches"] is False
    assert centre_check["grid"][0].startswith("x: 32 nodes including the boundary")
    # sampled on pirf's nodes the analytic solution leaves only the O(h^2) truncation error;
    # on cell centres the spacing and boundary are wrong, and the residual shows it
    assert centre_check["residual"]["mse"] > 10 * node_check["residual"]["mse"]


def test_pdebench_time_layouts(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "burgers.hdf5", "w") as file:
        file["tensor"] = rng.standard_normal((3, 8, 8)).astype(np.float32)
        file["x-coordinate"] = (np.arange(8) / 8).astype(np.float32)
        file["t-coordinate"] = (np.arange(9) / 8).astype(np.float32)  # T + 1 values
    summary = pirf.data.import_fields(
        tmp_path / "burgers.hdf5", tmp_path / "b.h5", format="pdebench", pde="burgers"
    )
    assert summary.grid_matches is True and summary.channels == {"u": "tensor"}
    frames = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    with h5py.File(tmp_path / "frames.hdf5", "w") as file:
        file["data"] = frames
    pirf.data.import_fields(
        tmp_path / "frames.hdf5", tmp_path / "f.h5", format="pdebench", pde="toy-frames"
    )
    assert np.array_equal(pirf.data.load(tmp_path / "f.h5").fields().numpy(), frames)
    last = rng.standard_normal((2, 1, 8, 8, 2))
    with h5py.File(tmp_path / "last.hdf5", "w") as file:
        file["tensor"] = last  # float64: stored as float32
    pirf.data.import_fields(
        tmp_path / "last.hdf5", tmp_path / "l.h5", format="pdebench", pde="toy-pair"
    )
    stored = pirf.data.load(tmp_path / "l.h5").fields().numpy()
    assert np.array_equal(stored, np.moveaxis(last[:, 0], -1, 1).astype(np.float32))
    with pytest.raises(PirfError, match="3 time level"):
        pirf.data.import_fields(tmp_path / "frames.hdf5", tmp_path / "x.h5", format="pdebench",
                                pde="toy")  # fmt: skip


def _well(path: Path, fields: dict[str, tuple[np.ndarray, bool, bool]], spatial: int = 2) -> Path:
    with h5py.File(path, "w") as file:
        file.attrs["dataset_name"] = "hand-built"
        file.attrs["n_spatial_dims"] = spatial
        dims = file.create_group("dimensions")
        names = ["x", "y"][:spatial]
        dims.attrs["spatial_dims"] = np.array(names, dtype=h5py.string_dtype())
        for name in names:
            dims[name] = np.linspace(0, 1, 8).astype(np.float32)
        dims["time"] = np.arange(4, dtype=np.float32)
        for where, (values, sample_varying, time_varying) in fields.items():
            dataset = file.create_dataset(where, data=values)
            dataset.attrs["sample_varying"] = sample_varying
            dataset.attrs["time_varying"] = time_varying
            dataset.attrs["dim_varying"] = np.ones(spatial, dtype=bool)
    return path


def test_the_well_fields_map_by_name_or_mapping(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    velocity = rng.standard_normal((3, 1, 8, 8, 2)).astype(np.float32)
    shared = rng.standard_normal((8, 8)).astype(np.float32)  # one map for every trajectory
    path = _well(
        tmp_path / "w.hdf5",
        {
            "t0_fields/a": (a, True, True),
            "t0_fields/mask": (shared, False, False),
            "t1_fields/velocity": (velocity, True, True),
        },
    )
    summary = pirf.data.import_fields(path, tmp_path / "t.h5", format="the-well", pde="toy",
                                      channels={"u": "t1_fields/velocity:1"})  # fmt: skip
    assert summary.channels == {"a": "t0_fields/a", "u": "t1_fields/velocity:1"}
    assert summary.grid_matches is True
    fields = pirf.data.load(tmp_path / "t.h5").fields().numpy()
    assert np.array_equal(fields[:, 0], a[:, 0]) and np.array_equal(
        fields[:, 1], velocity[:, 0, ..., 1]
    )
    pirf.data.import_fields(path, tmp_path / "s.h5", format="the-well", pde="toy",
                            channels={"u": "mask"})  # fmt: skip
    assert np.array_equal(
        pirf.data.load(tmp_path / "s.h5").fields().numpy()[:, 1], np.stack([shared] * 3)
    )
    with pytest.raises(PirfError, match="select a component with :K"):
        pirf.data.import_fields(path, tmp_path / "x.h5", format="the-well", pde="toy",
                                channels={"u": "t1_fields/velocity"})  # fmt: skip
    with pytest.raises(PirfError, match="no field 't0_fields/u'"):
        pirf.data.import_fields(path, tmp_path / "x.h5", format="the-well", pde="toy")
    steps = _well(
        tmp_path / "steps.hdf5", {"t0_fields/u": (np.zeros((2, 4, 8, 8), np.float32), True, True)}
    )
    with pytest.raises(PirfError, match="has 4 time steps"):
        pirf.data.import_fields(
            steps, tmp_path / "x.h5", format="the-well", pde="toy-residual-only"
        )
    assert not (tmp_path / "x.h5").exists()


def test_npy_directory_and_single_file(tmp_path):
    rng = np.random.default_rng(2)
    coef = rng.standard_normal((4, 8, 8)).astype(np.float32)
    sol = rng.standard_normal((4, 1, 8, 8))  # float64
    np.save(tmp_path / "coef.npy", coef)
    np.save(tmp_path / "sol.npy", sol)
    summary = pirf.data.import_fields(tmp_path, tmp_path / "d.h5", format="npy", pde="toy",
                                      channels={"a": "coef.npy", "u": "sol.npy"})  # fmt: skip
    assert summary.grid_matches is None and summary.grid[0]["source"] is None
    fields = pirf.data.load(tmp_path / "d.h5").fields().numpy()
    assert np.array_equal(fields[:, 0], coef)
    assert np.array_equal(fields[:, 1], sol[:, 0].astype(np.float32))
    report = pirf.data.check(tmp_path / "d.h5")
    assert report["imported"]["format"] == "npy" and report["imported"]["grid_matches"] is None
    np.save(tmp_path / "stacked.npy", np.stack([coef, coef], axis=1))
    pirf.data.import_fields(
        tmp_path / "stacked.npy", tmp_path / "s.h5", format="npy", pde="toy", n=2
    )
    assert pirf.data.load(tmp_path / "s.h5").shape == (2, 2, 8, 8)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PirfError, match="without pickle"):
        pirf.data.import_fields(tmp_path / "objects.npy", tmp_path / "x.h5", format="npy",
                                pde="toy-residual-only")  # fmt: skip
    with pytest.raises(PirfError, match="no file for channel 'a'"):
        pirf.data.import_fields(tmp_path, tmp_path / "x.h5", format="npy", pde="toy")
