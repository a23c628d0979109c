"""A save killed midway leaves hidden staging folders; resuming the run removes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pirf.errors import PirfError
from pirf.training import rundir, train
from tests.training.conftest import tiny_config

LEFTOVERS = (
    ".checkpoint.tmp-k2x9_a1q",
    ".best.tmp-0ab12cd3",
    ".checkpoint.old-zz81mmq0",
    "checkpoints/.iter-0000004.tmp-ab12cd34",
    "checkpoints/.trash-9f8e7d6c",
)
KEPT = ("notes.txt", ".hidden-by-the-user", "checkpoints/.keep")


def _litter(out: Path) -> None:
    for name in LEFTOVERS:
        (out / name).mkdir()
        (out / name / "model.safetensors").write_bytes(b"partial")
    for name in KEPT:
        (out / name).write_text("the user's\n")


def test_remove_staging_takes_only_staging_folders(tmp_path):
    (tmp_path / rundir.PERIODIC).mkdir()
    _litter(tmp_path)
    removed = rundir.remove_staging(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(LEFTOVERS)
    for name in LEFTOVERS:
        assert not (tmp_path / name).exists()
    for name in KEPT:
        assert (tmp_path / name).read_text() == "the user's\n"


def test_a_resumed_run_cleans_up_after_a_killed_save(poisson_file, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(poisson_file, out, stop_at=2))
    _litter(out)
    summary = train(tiny_config(poisson_file, out, resume=True, stop_at=4))
    assert summary["iterations"] == 4
    for name in LEFTOVERS:
        assert not (out / name).exists(), name
    for name in KEPT:
        assert (out / name).is_file()


def test_a_bad_resume_changes_nothing(poisson_file, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(poisson_file, out, stop_at=2))
    _litter(out)
    with pytest.raises(PirfError, match="batch"):
        train(tiny_config(poisson_file, out, resume=True, batch=8))
    for name in LEFTOVERS:
        assert (out / name).is_dir(), name
