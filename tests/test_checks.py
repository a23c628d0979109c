"""The checks entry points make first (pirf.checks), and a run directory as ``--ckpt``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import pirf.data
from pirf.checks import (
    check_not_inside_checkpoint,
    check_writable_dir,
    resolve_checkpoint,
)
from pirf.cli import main
from pirf.errors import PirfError
from pirf.sampling.from_checkpoint import sample_to_file
from tests.test_bad_inputs import _checkpoint


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("base") / "checkpoint")


def _run_dir(root: Path, base: Path, *folders: str) -> Path:
    """A run directory holding copies of ``base`` under ``folders`` (best, checkpoint)."""
    (root / "checkpoints").mkdir(parents=True)
    for folder in folders:
        shutil.copytree(base, root / folder)
    return root


def test_a_checkpoint_is_itself(base):
    assert resolve_checkpoint(base) == (base, "checkpoint")


def test_a_run_directory_means_its_best_else_its_final_checkpoint(base, tmp_path):
    tuned = _run_dir(tmp_path / "tuned", base, "best", "checkpoint")
    assert resolve_checkpoint(tuned) == (tuned / "best", "best")
    trained = _run_dir(tmp_path / "trained", base, "checkpoint")
    assert resolve_checkpoint(trained) == (trained / "checkpoint", "final")
    stopped = _run_dir(tmp_path / "stopped", base, "best")
    assert resolve_checkpoint(stopped) == (stopped / "best", "best")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "no such checkpoint directory"),
        (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", "a checkpoint is a directory"),
        (lambda d: d, "neither a pirf checkpoint"),
        (lambda d: (d / "checkpoints").mkdir() or d, "no final or best checkpoint yet"),
    ],
)
def test_what_is_no_checkpoint_is_refused(tmp_path, make, message):
    with pytest.raises(PirfError, match=message):
        resolve_checkpoint(make(tmp_path))


def test_a_writable_directory_is_probed_without_a_trace(tmp_path):
    before = tmp_path.stat().st_mtime_ns
    assert check_writable_dir(tmp_path / "a" / "b", "out") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == [] and tmp_path.stat().st_mtime_ns == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(PirfError, match=r"out .*file is a file; give a directory"):
        check_writable_dir(tmp_path / "file", "out")
    with pytest.raises(PirfError, match="is a file, not a directory"):
        check_writable_dir(tmp_path / "file" / "run", "out")


def test_paths_inside_a_checkpoint_are_refused(base):
    with pytest.raises(PirfError, match=r"out .* is the checkpoint"):
        check_not_inside_checkpoint(base, "out")
    with pytest.raises(PirfError, match="lies inside the checkpoint"):
        check_not_inside_checkpoint(base / "deeper" / "run", "out")
    check_not_inside_checkpoint(base.parent / "sibling", "out")


def test_python_callers_read_their_own_argument_names(base, tmp_path):
    with pytest.raises(PirfError, match=r"^n must be a positive integer, got 0$"):
        sample_to_file(base, tmp_path / "s.h5", n=0)
    with pytest.raises(PirfError, match=r"^out .* lies inside the checkpoint"):
        sample_to_file(base, base / "s.h5", n=2)
    assert list(tmp_path.iterdir()) == []


def test_sample_and_evaluate_say_which_checkpoint_of_a_run_they_took(base, tmp_path, capsys):
    run = _run_dir(tmp_path / "run", base, "best", "checkpoint")
    samples = tmp_path / "s.h5"
    code = main(["sample", "--ckpt", str(run), "--n", "2", "--steps", "2", "--out-file",
                 str(samples), "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert summary["checkpoint"] == str(run / "best") and summary["checkpoint_kind"] == "best"
    assert captured.err.strip() == (
        f"--ckpt {run} is a run directory: took its best checkpoint {run / 'best'}"
    )
    reference = tmp_path / "test.h5"
    pirf.data.generate("poisson", 8, 8, 1, reference, split="test")
    shutil.rmtree(run / "best")
    code = main(["evaluate", "--ckpt", str(run), "--reference", str(reference), "--steps", "2",
                 "--n", "4", "--no-consistency", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert report["checkpoint_kind"] == "final"
    assert report["rows"][0]["checkpoint"] == str(run / "checkpoint")
    assert "took its final checkpoint" in captured.err
    code = main(["sample", "--ckpt", str(base), "--n", "2", "--steps", "2", "--out-file",
                 str(tmp_path / "t.h5"), "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["checkpoint_kind"] == "checkpoint"
    assert captured.err == ""


def test_finetune_takes_the_checkpoint_a_run_directory_stands_for(base, tmp_path, capsys):
    run = _run_dir(tmp_path / "base-run", base, "checkpoint")
    out = tmp_path / "tuned"
    code = main(["finetune", "--ckpt", str(run), "--out", str(out), "--iters", "1",
                 "--batch", "2", "--eval-n", "4", "--eval-steps", "4", "--steps", "4",
                 "--device", "cpu", "--no-figures", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["base_checkpoint"] == str(run / "checkpoint")
    assert captured.err.strip().endswith(f"took its final checkpoint {run / 'checkpoint'}")


def test_a_resumed_fine_tuning_run_must_name_its_own_base(base, tmp_path, capsys):
    out = tmp_path / "tuned"
    args = ["finetune", "--out", str(out), "--iters", "2", "--stop-at", "1", "--batch", "2",
            "--eval-n", "4", "--eval-steps", "4", "--steps", "4", "--device", "cpu",
            "--no-figures", "--json"]  # fmt: skip
    assert main([*args, "--ckpt", str(base)]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    shutil.copytree(base, other)
    info = json.loads((other / "checkpoint.json").read_text())
    info["training"] = {"note": "another base"}
    (other / "checkpoint.json").write_text(json.dumps(info))
    (out / ".checkpoint.tmp-abcd1234").mkdir()
    before = sorted(str(p) for p in out.rglob("*"))
    assert main([*args, "--ckpt", str(other), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not the base checkpoint the run" in err
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_a_gpu_the_machine_does_not_have_is_refused(monkeypatch):
    from pirf.checks import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(PirfError, match=r"cuda:2 does not exist: this machine has 2 CUDA"):
        check_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PirfError, match="no CUDA GPU is available"):
        check_device("cuda")
    with pytest.raises(PirfError, match="unknown device 'tpu'"):
        check_device("tpu")
