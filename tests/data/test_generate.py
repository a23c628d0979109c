"""Generation: deterministic whatever the chunking, disjoint splits, presets, validation,
and all-or-nothing files."""

from __future__ import annotations

from typing import Any, ClassVar

import h5py
import numpy as np
import pytest
import torch

import pirf.data
from pirf.errors import PirfError
from pirf.pdes.normalisation import Normalisation
from pirf.seeding import unit_generators
from tests.data.toy_pdes import Toy


def _fields(path) -> np.ndarray:
    with h5py.File(path, "r") as file:
        return file["fields"][:]


@pytest.mark.parametrize("frames", [1, 3])
def test_data_is_bitwise_identical_for_any_batch_size(tmp_path, frames):
    paths = []
    for batch_size in (1, 2, 7, 64):
        path = tmp_path / f"b{batch_size}.h5"
        pirf.data.generate("toy", 10, 8, 3, path, batch_size=batch_size, params={"frames": frames})
        paths.append(path)
    reference = _fields(paths[0])
    assert reference.shape == (10, 2, 8, 8) and reference.dtype == np.float32
    for path in paths[1:]:
        assert _fields(path).tobytes() == reference.tobytes()


def test_samples_follow_their_unit_generators(tmp_path):
    """Sample i is frame i % frames of unit i // frames, drawn from unit_generators(seed,
    split, [unit]); the last unit is used in part when N is not a multiple of frames."""
    path = tmp_path / "traj.h5"
    pirf.data.generate("toy", 7, 8, 11, path, split="val", params={"frames": 3}, batch_size=2)
    pde = Toy(scale=2.0, frames=3)
    expected = pde.generate(unit_generators(11, "val", range(3)), 8).to(torch.float32)[:7]
    assert torch.equal(torch.from_numpy(_fields(path)), expected)


def test_a_larger_dataset_extends_a_smaller_one(tmp_path):
    small = pirf.data.generate("toy", 4, 8, 6, tmp_path / "s.h5", params={"frames": 3})
    large = pirf.data.generate("toy", 9, 8, 6, tmp_path / "l.h5", params={"frames": 3})
    assert _fields(large.path)[:4].tobytes() == _fields(small.path).tobytes()


def test_splits_are_disjoint_streams_and_reproducible(tmp_path):
    summaries = pirf.data.generate_splits(
        "toy", {"train": 6, "test": 4, "val": 3}, 8, 2, tmp_path / "set"
    )
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == [
        "test.h5",
        "train.h5",
        "val.h5",
    ]
    arrays = {split: _fields(summary.path) for split, summary in summaries.items()}
    inputs = {split: {row.tobytes() for row in array[:, 0]} for split, array in arrays.items()}
    assert not inputs["train"] & inputs["test"]
    assert not inputs["train"] & inputs["val"]
    assert not inputs["test"] & inputs["val"]
    # the test split of `splits` is what `generate --split test` makes with the same seed
    alone = tmp_path / "test_alone.h5"
    pirf.data.generate("toy", 4, 8, 2, alone, split="test")
    assert _fields(alone).tobytes() == arrays["test"].tobytes()
    with h5py.File(summaries["val"].path, "r") as file:
        assert file.attrs["split"] == "val" and file.attrs["seed"] == 2


def test_preset_is_chosen_by_resolution_and_params_override_it(tmp_path):
    summary = pirf.data.generate("toy", 2, 12, 0, tmp_path / "a.h5")
    assert summary.preset == "wide" and summary.pde.params["scale"] == 3.0
    summary = pirf.data.generate("toy", 2, 12, 0, tmp_path / "b.h5", params={"scale": 5})
    assert summary.pde.params["scale"] == 5
    summary = pirf.data.generate("toy", 2, None, 0, tmp_path / "c.h5", preset="tiny")
    assert summary.resolution == 8 and summary.pde.params["scale"] == 2.0
    summary = pirf.data.generate("toy", 2, 10, 0, tmp_path / "d.h5")
    assert summary.preset is None and summary.pde.params["scale"] == 1.0
    data = pirf.data.load(tmp_path / "b.h5")
    assert data.pde.params["scale"] == 5 and data.attrs["preset"] == "wide"


def test_stored_normalisation_is_mean_and_twice_std_of_the_stored_fields(tmp_path):
    summary = pirf.data.generate("toy", 9, 8, 1, tmp_path / "n.h5", batch_size=4)
    fields = torch.from_numpy(_fields(summary.path)).double()
    expected = Normalisation.from_fields(fields)
    data = pirf.data.load(summary.path)
    np.testing.assert_allclose(data.normalisation.shift, expected.shift, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(data.normalisation.scale, expected.scale, rtol=1e-12)
    model = data.torch_dataset()
    stacked = torch.stack([model[i] for i in range(len(model))]).double()
    np.testing.assert_allclose(stacked.transpose(0, 1).flatten(1).std(1, correction=0), 0.5)


def test_float32_solver_gives_nearly_the_same_data(tmp_path):
    double = pirf.data.generate("toy", 4, 8, 0, tmp_path / "d.h5")
    single = pirf.data.generate("toy", 4, 8, 0, tmp_path / "s.h5", dtype="float32")
    assert single.dtype == "float32"
    np.testing.assert_allclose(_fields(single.path), _fields(double.path), rtol=1e-6)
    with h5py.File(single.path, "r") as file:
        assert file.attrs["solver_dtype"] == "float32"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pde": "no-such-pde"}, "unknown PDE 'no-such-pde'; known: .*toy"),
        ({"n": 0}, "number of samples must be positive"),
        ({"n": -3}, "number of samples must be positive"),
        ({"resolution": 3}, "resolution 3 is too small"),
        ({"seed": -1}, "seed must be"),
        ({"split": "holdout"}, "unknown split"),
        ({"batch_size": 0}, "batch size must be positive"),
        ({"dtype": "float16"}, "unsupported solver dtype"),
        ({"device": "tpu"}, "device"),
        ({"pde": "toy-residual-only"}, "cannot generate data"),
        ({"params": {"viscosity": 1}}, "unknown parameter"),
        ({"preset": "huge"}, "no preset 'huge'"),
        ({"compression": "zstd"}, "unknown compression"),
    ],
)
def test_bad_requests_fail_before_any_work(tmp_path, kwargs, message):
    request = {"pde": "toy", "n": 4, "resolution": 10, "seed": 0, "out": tmp_path / "x.h5"}
    request.update(kwargs)
    with pytest.raises(PirfError, match=message):
        pirf.data.generate(**request)
    assert list(tmp_path.iterdir()) == []


class NoPresets(Toy):
    """A toy PDE without presets: a request must name its resolution."""

    name = "toy-no-presets"
    presets: ClassVar[dict[str, dict[str, Any]]] = {}


def test_resolution_defaults_to_the_tiny_preset(tmp_path):
    summary = pirf.data.generate("toy", 2, None, 0, tmp_path / "x.h5")
    assert summary.preset == "tiny" and summary.written.shape[-1] == 8
    with pytest.raises(PirfError, match="give a resolution or a preset that has one"):
        pirf.data.generate(f"{__name__}:NoPresets", 2, None, 0, tmp_path / "y.h5")
    assert not (tmp_path / "y.h5").exists()


def test_destination_checks(tmp_path):
    with pytest.raises(PirfError, match="does not exist"):
        pirf.data.generate("toy", 2, 8, 0, tmp_path / "missing" / "x.h5")
    (tmp_path / "file").write_text("")
    with pytest.raises(PirfError, match="not a directory"):
        pirf.data.generate("toy", 2, 8, 0, tmp_path / "file" / "x.h5")
    with pytest.raises(PirfError, match="is a directory"):
        pirf.data.generate("toy", 2, 8, 0, tmp_path)
    target = tmp_path / "x.h5"
    first = pirf.data.generate("toy", 2, 8, 0, target)
    with pytest.raises(PirfError, match="already exists; pass force=True"):
        pirf.data.generate("toy", 3, 8, 0, target)
    assert len(pirf.data.load(target)) == 2
    pirf.data.generate("toy", 3, 8, 0, target, force=True)
    assert len(pirf.data.load(target)) == 3 and first.n == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x.h5"]


def test_nan_from_the_solver_leaves_no_file(tmp_path):
    with pytest.raises(PirfError, match=r"NaN or inf in units 0\.\.3"):
        pirf.data.generate("toy", 4, 8, 0, tmp_path / "x.h5", params={"blowup": True})
    assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_run_leaves_no_file_and_keeps_an_old_one(tmp_path):
    target = tmp_path / "x.h5"
    pirf.data.generate("toy", 2, 8, 0, target)
    before = target.read_bytes()

    def interrupt(done: int, total: int) -> None:
        if done > 0:
            assert done < total
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pirf.data.generate("toy", 6, 8, 1, target, batch_size=2, force=True, progress=interrupt)
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]
    assert target.read_bytes() == before


def test_failed_splits_remove_the_directory_they_created(tmp_path):
    with pytest.raises(PirfError, match="NaN"):
        pirf.data.generate_splits(
            "toy", {"train": 2, "test": 2}, 8, 0, tmp_path / "set", params={"blowup": True}
        )
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "set").mkdir()
    pirf.data.generate("toy", 2, 8, 0, tmp_path / "set" / "test.h5")
    with pytest.raises(PirfError, match=r"test\.h5 already exists"):
        pirf.data.generate_splits("toy", {"train": 2, "test": 2}, 8, 0, tmp_path / "set")
    assert [p.name for p in (tmp_path / "set").iterdir()] == ["test.h5"]


def test_progress_reports_every_chunk(tmp_path):
    calls = []
    pirf.data.generate(
        "toy", 5, 8, 0, tmp_path / "p.h5", batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]


def test_splits_make_missing_parent_folders_and_leave_none_when_refused(tmp_path):
    out = tmp_path / "a" / "b"
    pirf.data.generate_splits("toy", {"train": 2, "test": 2}, 8, 0, out)
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5"]
    with pytest.raises(PirfError):
        pirf.data.generate_splits("toy", {"train": 2}, 8, 0, tmp_path / "c" / "d", batch_size=0)
    assert not (tmp_path / "c").exists()
