"""``pirf data import | export`` through the command line: JSON summaries, the round trip,
the grid convention in ``pirf data check``, and one-line errors (exit code 2, nothing
written) for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pirf.data
import pirf.pdes
from tests.data.toy_pdes import ResidualOnly, Toy
from tests.test_cli_data import assert_one_line_error, listing, run


@pytest.fixture(autouse=True)
def toy_pdes() -> None:
    pirf.pdes.register(Toy, replace=True)
    pirf.pdes.register(ResidualOnly, replace=True)


def test_export_and_import_round_trip_on_the_command_line(tmp_path, capsys):
    original = tmp_path / "d.h5"
    pirf.data.generate("toy", 4, 8, 2, original)
    for format in ("the-well", "pdebench"):
        exported = tmp_path / f"{format}.hdf5"
        code, stdout, _ = run(
            capsys, "data", "export", original, "--format", format, "--out-file", exported, "--json"
        )
        assert code == 0 and stdout.count("\n") == 1
        summary = json.loads(stdout)
        assert summary["format"] == format and summary["n"] == 4 and summary["datasets"]
        back = tmp_path / f"{format}.h5"
        code, stdout, _ = run(
            capsys, "data", "import", exported, "--format", format, "--out-file", back, "--json"
        )
        assert code == 0 and stdout.count("\n") == 1
        report = json.loads(stdout)
        assert report["pde"] == "toy" and report["pirf_metadata"] and report["grid_matches"]
        assert report["n"] == 4 and report["shape"] == [4, 2, 8, 8]
        assert torch.equal(pirf.data.load(back).fields(), pirf.data.load(original).fields())
    code, stdout, _ = run(capsys, "data", "export", original, "--format", "the-well",
                          "--out-file", tmp_path / "t.hdf5")  # fmt: skip
    assert code == 0 and "t0_fields/a" in stdout


def _centred_darcy(directory: Path) -> Path:
    path = directory / "darcy.hdf5"
    rng = np.random.default_rng(0)
    centres = ((np.arange(8) + 0.5) / 8).astype(np.float32)
    with h5py.File(path, "w") as file:
        file["nu"] = rng.uniform(1, 2, (2, 8, 8)).astype(np.float32)
        file["tensor"] = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
        file["x-coordinate"] = centres
        file["y-coordinate"] = centres
    return path


def test_import_then_check_states_the_grid_convention(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = _centred_darcy(tmp_path)
    code, stdout, _ = run(capsys, "data", "import", "darcy.hdf5", "--format", "pdebench",
                          "--pde", "toy", "--param", "scale=3", "--out-file", "d.h5")  # fmt: skip
    assert code == 0
    for text in ("Imported 2 samples of toy", "a <- nu", "u <- tensor[:, 0]", "cell centres",
                 "DIFFERS", "pirf data check"):  # fmt: skip
        assert text in stdout, text
    assert pirf.data.load(tmp_path / "d.h5").params["scale"] == 3
    code, stdout, _ = run(capsys, "data", "check", "d.h5", "--json")
    report = json.loads(stdout)
    assert report["grid"][0].startswith("x: 8 nodes including the boundary of [0, 1], h = 1/(R-1)")
    assert report["imported"]["grid_matches"] is False
    assert report["imported"]["channels"] == {"a": "nu", "u": "tensor[:, 0]"}
    code, stdout, _ = run(capsys, "data", "check", "d.h5")
    for text in ("nodes including the boundary", "imported", "pdebench", "DIFFERS from pirf's",
                 "The source's grid is not pirf's"):  # fmt: skip
        assert text in stdout, text
    assert source.exists()


def _foreign(directory: Path, **datasets: np.ndarray) -> Path:
    path = directory / "source.hdf5"
    with h5py.File(path, "w") as file:
        for name, values in datasets.items():
            file[name] = values
    return path


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def _npy_dir(directory: Path) -> Path:
    folder = directory / "arrays"
    folder.mkdir()
    np.save(folder / "a.npy", _zeros(2, 8, 8))
    return folder


def _text(directory: Path) -> Path:
    (directory / "notes.txt").write_text("not data\n")
    return directory / "notes.txt"


def _existing(directory: Path) -> Path:
    (directory / "out.h5").write_bytes(b"keep")
    return _foreign(directory, tensor=_zeros(2, 8, 8))


IMPORT_CASES = {
    "unknown pde": (lambda d: _foreign(d, tensor=_zeros(2, 8, 8)), ["--pde", "warp-drive"],
                    "unknown PDE 'warp-drive'"),
    "missing dataset": (lambda d: _foreign(d, x=_zeros(3)), ["--pde", "toy"],
                        "has no 'tensor' or 'data' dataset"),
    "darcy shapes": (lambda d: _foreign(d, nu=_zeros(2, 8, 8), tensor=_zeros(3, 1, 8, 8)),
                     ["--pde", "toy"], "disagree on the samples or the grid"),
    "channel count": (lambda d: _foreign(d, tensor=_zeros(2, 3, 8, 8)), ["--pde", "toy"],
                      "PDE 'toy' has 2 channel(s) (a, u)"),
    "darcy layout for one channel": (
        lambda d: _foreign(d, nu=_zeros(2, 8, 8), tensor=_zeros(2, 1, 8, 8)),
        ["--pde", "toy-residual-only"], "PDEBench's Darcy layout"),
    "no pde": (lambda d: _foreign(d, tensor=_zeros(2, 8, 8)), [],
               "carries no pirf metadata; name its PDE with --pde"),
    "not square": (lambda d: _foreign(d, tensor=_zeros(2, 8, 10)), ["--pde", "toy-residual-only"],
                   "pirf stores square grids"),
    "too small": (lambda d: _foreign(d, tensor=_zeros(2, 3, 3)), ["--pde", "toy-residual-only"],
                  "resolution 3 is too small"),
    "too many": (lambda d: _foreign(d, tensor=_zeros(2, 8, 8)),
                 ["--pde", "toy-residual-only", "--n", "5"], "holds 2 samples; cannot import 5"),
    "strings": (lambda d: _foreign(d, tensor=np.array([[b"x"]])), ["--pde", "toy-residual-only"],
                "pirf imports real numbers only"),
    "missing source": (lambda d: d / "absent.hdf5", ["--pde", "toy"], "no such file"),
    "not the well": (lambda d: _foreign(d, tensor=_zeros(2, 8, 8)),
                     ["--pde", "toy", "--format", "the-well"], "is not a The Well file"),
    "not hdf5": (_text, ["--pde", "toy"], "is not an HDF5 file"),
    "channel syntax": (lambda d: _npy_dir(d), ["--pde", "toy", "--format", "npy", "--channel", "a"],
                       "--channel expects CHANNEL=SOURCE"),
    "channel unknown": (lambda d: _npy_dir(d),
                        ["--pde", "toy", "--format", "npy", "--channel", "zz=a.npy"],
                        "--channel names zz, not channels of PDE 'toy'"),
    "npy missing channel": (lambda d: _npy_dir(d), ["--pde", "toy", "--format", "npy"],
                            "no file for channel 'u'"),
    "channel for pdebench": (lambda d: _foreign(d, tensor=_zeros(2, 8, 8)),
                             ["--pde", "toy", "--channel", "a=x"], "map channels by shape"),
    "existing output": (_existing, ["--pde", "toy-residual-only"], "already exists; pass --force"),
    "bad format": (lambda d: _foreign(d, tensor=_zeros(2, 8, 8)), ["--format", "netcdf"],
                   "Invalid value for '--format'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_import_refuses_bad_inputs_with_one_line(tmp_path, capsys, case):
    prepare, args, message = IMPORT_CASES[case]
    source = prepare(tmp_path)
    if "--format" not in args:
        args = [*args, "--format", "pdebench"]
    before = listing(tmp_path)
    code, stdout, stderr = run(
        capsys, "data", "import", source, *args, "--out-file", tmp_path / "out.h5", "--json"
    )
    assert_one_line_error(code, stdout, stderr, message)
    assert listing(tmp_path) == before


def test_export_refuses_bad_inputs_with_one_line(tmp_path, capsys):
    foreign = _foreign(tmp_path, tensor=_zeros(2, 8, 8))
    code, stdout, stderr = run(capsys, "data", "export", foreign, "--format", "pdebench",
                               "--out-file", tmp_path / "x.hdf5")  # fmt: skip
    assert_one_line_error(code, stdout, stderr, "not a pirf dataset")
    original = tmp_path / "d.h5"
    pirf.data.generate("toy", 2, 8, 0, original)
    before = listing(tmp_path)
    code, stdout, stderr = run(capsys, "data", "export", original, "--format", "pdebench",
                               "--out-file", original)  # fmt: skip
    assert_one_line_error(code, stdout, stderr, "already exists; pass --force")
    code, stdout, stderr = run(capsys, "data", "export", original, "--format", "pdebench",
                               "--out-file", original, "--force")  # fmt: skip
    assert_one_line_error(code, stdout, stderr, "--out-file must differ from the source")
    code, stdout, stderr = run(capsys, "data", "export", original, "--format", "npy",
                               "--out-file", tmp_path / "x.npy")  # fmt: skip
    assert_one_line_error(code, stdout, stderr, "Invalid value for '--format'")
    assert listing(tmp_path) == before
