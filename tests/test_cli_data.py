"""``pirf data generate | splits | check`` through the command line: output contracts and
one-line errors (exit code 2, no traceback, nothing left behind) for every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pirf.data
import pirf.pdes
from pirf.cli import main
from tests.data.toy_pdes import ResidualOnly, Toy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def toy_pdes() -> None:
    pirf.pdes.register(Toy, replace=True)
    pirf.pdes.register(ResidualOnly, replace=True)


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_generate_json_is_one_object_and_matches_the_api(tmp_path, capsys):
    out = tmp_path / "d.h5"
    code, stdout, _ = run(
        capsys, "data", "generate", "toy", "--n", 5, "--resolution", 8, "--seed", 4,
        "--out-file", out, "--batch", 2, "--param", "scale=3", "--param", "frames=2", "--json",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)
    assert stdout.count("\n") == 1
    assert summary["path"] == str(out) and summary["n"] == 5 and summary["shape"] == [5, 2, 8, 8]
    assert summary["params"]["scale"] == 3 and summary["preset"] == "tiny"
    assert summary["samples_per_second"] > 0 and len(summary["normalisation"]["shift"]) == 2
    pirf.data.generate("toy", 5, 8, 4, tmp_path / "api.h5", params={"scale": 3, "frames": 2})
    assert torch.equal(pirf.data.load(out).fields(), pirf.data.load(tmp_path / "api.h5").fields())


def test_generate_prints_a_readable_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short path: the table folds long ones across lines
    code, stdout, stderr = run(
        capsys, "data", "generate", "toy", "--n", 3, "--resolution", 8, "--seed", 0,
        "--out-file", "d.h5", "--split", "val", "--dtype", "float32",
    )  # fmt: skip
    assert code == 0
    for text in ("d.h5", "samples/s", "shift", "scale", "float32", "val"):
        assert text in stdout
    assert stderr.splitlines() == ["val: 0/3 samples", "val: 3/3 samples"]  # no terminal


def test_splits_make_disjoint_files(tmp_path, capsys):
    out_dir = tmp_path / "set"
    code, stdout, _ = run(
        capsys, "data", "splits", "toy", "--train", 4, "--test", 2, "--val", 2,
        "--preset", "wide", "--seed", 9, "--out", out_dir, "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(stdout)
    assert set(report["files"]) == {"train", "test", "val"}
    assert listing(out_dir) == ["test.h5", "train.h5", "val.h5"]
    rows = {}
    for split in ("train", "test", "val"):
        data = pirf.data.load(out_dir / f"{split}.h5")
        assert data.split == split and data.seed == 9 and data.resolution == 12
        rows[split] = {row.numpy().tobytes() for row in data.fields()[:, 0]}
    assert not rows["train"] & rows["test"] and not rows["val"] & (rows["train"] | rows["test"])


def test_check_json_and_table(tmp_path, capsys):
    path = tmp_path / "d.h5"
    pirf.data.generate("toy", 6, 8, 1, path)
    code, stdout, _ = run(capsys, "data", "check", path, "--json", "--batch", 4)
    assert code == 0 and stdout.count("\n") == 1
    report = json.loads(stdout)
    for key in ("pde", "n", "resolution", "channels", "shape", "channel_stats", "residual"):
        assert key in report
    assert set(report["residual"]) >= {
        "mse", "mae", "mse_median", "mse_p90", "mae_median", "mae_p90"
    }  # fmt: skip
    assert set(report["channel_stats"]["u"]) == {"mean", "std", "min", "max"}
    code, stdout, _ = run(capsys, "data", "check", path)
    assert code == 0
    for text in ("d.h5", "toy", "MSE", "MAE", "median", "p90", "6x2x8x8"):
        assert text in stdout


def _toy_file(directory: Path) -> Path:
    path = directory / "d.h5"
    pirf.data.generate("toy", 4, 8, 0, path)
    return path


def _set_attr(directory: Path, **attrs) -> Path:
    path = _toy_file(directory)
    with h5py.File(path, "r+") as file:
        for name, value in attrs.items():
            file.attrs[name] = value
    return path


def _nan_file(directory: Path) -> Path:
    path = _toy_file(directory)
    with h5py.File(path, "r+") as file:
        file["fields"][2, 0, 0, 0] = np.inf
    return path


def _truncated(directory: Path) -> Path:
    path = _toy_file(directory)
    path.write_bytes(path.read_bytes()[:3000])
    return path


def _corrupt_chunk(directory: Path) -> Path:
    path = _toy_file(directory)
    with h5py.File(path, "r") as file:
        offset = file["fields"].id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset + 40)
        raw.write(b"\xff\xff\xff\xff")
    return path


def _text_file(directory: Path) -> Path:
    path = directory / "notes.h5"
    path.write_text("hello\n")
    return path


def _foreign_hdf5(directory: Path) -> Path:
    path = directory / "foreign.h5"
    with h5py.File(path, "w") as file:
        file["x"] = np.arange(3)
    return path


CHECK_CASES = {
    "missing": (lambda d: d / "missing.h5", "no such file"),
    "directory": (lambda d: d, "is a directory"),
    "not hdf5": (_text_file, "is not an HDF5 file"),
    "truncated": (_truncated, "corrupt or truncated"),
    "corrupt chunk": (_corrupt_chunk, "corrupt or truncated"),
    "foreign hdf5": (_foreign_hdf5, "not a pirf dataset"),
    "nan": (_nan_file, "sample 2 holds NaN or inf"),
    "unknown pde": (lambda d: _set_attr(d, pde="warp-drive"), "unknown PDE 'warp-drive'"),
}


def assert_one_line_error(code: int, stdout: str, stderr: str, message: str) -> None:
    assert code == 2
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_check_refuses_bad_files_with_one_line(tmp_path, capsys, case):
    prepare, message = CHECK_CASES[case]
    path = prepare(tmp_path)
    before = listing(tmp_path)
    code, stdout, stderr = run(capsys, "data", "check", path, "--json")
    assert_one_line_error(code, stdout, stderr, message)
    assert listing(tmp_path) == before


GENERATE_CASES = {
    "unknown pde": (["nope"], "unknown PDE 'nope'; known: "),
    "n zero": (["toy", "--n", "0"], "number of samples must be positive"),
    "resolution too small": (["toy", "--resolution", "2"], "resolution 2 is too small"),
    "cannot generate": (["toy-residual-only"], "cannot generate data"),
    "bad param": (["toy", "--param", "scale"], "--param expects key=value"),
    "unknown param": (["toy", "--param", "nu=0.1"], "unknown parameter(s) nu"),
    "negative seed": (["toy", "--seed", "-2"], "seed must be"),
    "solver nan": (["toy", "--param", "blowup=true"], "produced NaN or inf"),
    "missing dir": (["toy", "--out-file", "{tmp}/no/d.h5"], "does not exist; create it first"),
    "no cuda": (["toy", "--device", "cuda"], "no CUDA GPU is available"),
}


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_refuses_bad_requests_with_one_line(tmp_path, capsys, case):
    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    args, message = GENERATE_CASES[case]
    defaults = {
        "--n": "3",
        "--resolution": "8",
        "--seed": "0",
        "--out-file": str(tmp_path / "d.h5"),
    }
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for option, value in defaults.items():
        if option not in args:
            args += [option, value]
    code, stdout, stderr = run(capsys, "data", "generate", *args, "--json")
    assert_one_line_error(code, stdout, stderr, message)
    assert listing(tmp_path) == []


def test_existing_files_need_force(tmp_path, capsys):
    path = _toy_file(tmp_path)
    before = path.read_bytes()
    base = ["data", "generate", "toy", "--n", 2, "--resolution", 8, "--seed", 1, "--out-file", path]
    code, stdout, stderr = run(capsys, *base)
    assert_one_line_error(code, stdout, stderr, "already exists; pass --force")
    assert path.read_bytes() == before
    assert run(capsys, *base, "--force")[0] == 0
    assert len(pirf.data.load(path)) == 2 and listing(tmp_path) == ["d.h5"]
    (tmp_path / "set").mkdir()
    _toy_file(tmp_path / "set")
    (tmp_path / "set" / "d.h5").rename(tmp_path / "set" / "test.h5")
    code, stdout, stderr = run(
        capsys, "data", "splits", "toy", "--train", 2, "--test", 2, "--resolution", 8,
        "--seed", 0, "--out", tmp_path / "set",
    )  # fmt: skip
    assert_one_line_error(code, stdout, stderr, "test.h5 already exists")
    assert listing(tmp_path / "set") == ["test.h5"]


def test_splits_without_a_resolution_take_the_tiny_preset(tmp_path, capsys):
    code, stdout, _ = run(
        capsys, "data", "splits", "toy", "--train", 2, "--test", 2, "--seed", 0,
        "--out", tmp_path / "set", "--json",
    )  # fmt: skip
    assert code == 0
    files = json.loads(stdout)["files"]
    assert {f["preset"] for f in files.values()} == {"tiny"}
    assert {f["shape"][-1] for f in files.values()} == {8}


def test_splits_of_a_pde_without_presets_need_a_resolution(tmp_path, capsys):
    code, stdout, stderr = run(
        capsys, "data", "splits", "tests.data.test_generate:NoPresets", "--train", 2,
        "--test", 2, "--seed", 0, "--out", tmp_path / "set",
    )  # fmt: skip
    assert_one_line_error(code, stdout, stderr, "give a --resolution or a --preset")
    assert listing(tmp_path) == []


def _pirf_process(*args: object) -> subprocess.Popen:
    command = [sys.executable, "-c", "from pirf.cli import run; run()", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_terminated_generation_leaves_nothing_behind(tmp_path):
    """SIGTERM while solving: the temporary file is removed and no dataset appears."""
    process = _pirf_process(
        "data", "generate", "tests.data.toy_pdes:Toy", "--n", 200, "--resolution", 8,
        "--seed", 0, "--out-file", tmp_path / "d.h5", "--batch", 1, "--param", "delay=0.05",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    # (the writability check's probe folder may come and go before the file appears)
    while not any(".h5.tmp-" in p.name for p in tmp_path.iterdir()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    temporary = list(tmp_path.iterdir())
    assert len(temporary) == 1 and ".h5.tmp-" in temporary[0].name
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_console_entry_point_reports_errors_on_one_line(tmp_path):
    process = _pirf_process("data", "check", tmp_path / "absent.h5")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and stdout == ""
    assert stderr.strip() == f"error: no such file: {tmp_path / 'absent.h5'}"
