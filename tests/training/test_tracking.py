"""Trackers: every line of ``metrics.jsonl`` reaches TensorBoard or W&B under flat keys,
a missing package or unknown name is a one-line error before any work, and a resumed run
keeps logging at the right iterations."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

from pirf.errors import PirfError
from pirf.training import train
from pirf.training.tracking import check_tracker, flatten, open_tracker

from .conftest import tiny_config


def test_flatten_names_nested_values_by_their_path():
    record = {"kind": "eval", "iteration": 40, "residual_mse": {"20": 0.5, "5": 0.7}, "x": [1]}
    assert flatten(record) == {
        "kind": "eval",
        "iteration": 40,
        "residual_mse/20": 0.5,
        "residual_mse/5": 0.7,
        "x": [1],
    }
    assert flatten({"a": {"b": {"c": 1}}}) == {"a/b/c": 1}


def test_unknown_tracker_and_missing_package_are_one_line_errors(monkeypatch):
    with pytest.raises(PirfError, match="unknown tracker 'mlflow'; use one of tensorboard, wandb"):
        check_tracker("mlflow")
    check_tracker("none")
    check_tracker(None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(PirfError, match=r'needs the wandb package: pip install "pirf\[wandb\]"'):
        check_tracker("wandb")


def test_cli_refuses_a_missing_tracker_package_before_making_the_run(
    poisson_file, tmp_path, capsys, monkeypatch
):
    import importlib.util

    from pirf.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    out = tmp_path / "run"
    code = main(["train", "--data", str(poisson_file), "--out", str(out), "--tracker",
                 "tensorboard", "--iters", "2", "--preset", "tiny"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--tracker tensorboard needs the tensorboard package" in err
    assert not out.exists()


class FakeWandbRun:
    """Records what a W&B run is given."""

    def __init__(self, **init: object) -> None:
        self.init, self.logged, self.finished = init, [], False
        self.dir = f"{init['dir']}/wandb/offline-run-1/files"

    def log(self, scalars: dict, step: int) -> None:
        self.logged.append((step, scalars))

    def finish(self) -> None:
        self.finished = True


def fake_wandb(runs: list[FakeWandbRun]) -> types.ModuleType:
    """A stand-in ``wandb`` module whose runs land in ``runs``."""
    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: runs.append(FakeWandbRun(**kw)) or runs[-1]
    return fake


def test_wandb_gets_every_line_offline_and_resumes_at_the_checkpoint(
    poisson_file, tmp_path, monkeypatch
):
    runs: list[FakeWandbRun] = []
    fake = fake_wandb(runs)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "run"
    train(tiny_config(poisson_file, out, tracker="wandb", stop_at=4))
    summary = train(tiny_config(poisson_file, out, tracker="wandb", resume=True))
    assert summary["tracker"] == f"wandb sync {out}/wandb/offline-run-1"
    assert [r.init["mode"] for r in runs] == ["offline", "offline"]
    assert runs[0].init["dir"] == str(out) and runs[0].init["name"] == "run"
    assert runs[0].init["config"]["lr"] == pytest.approx(2e-3)
    assert all(r.finished for r in runs)
    steps = [step for r in runs for step, _ in r.logged]
    assert steps == [2, 4, 6]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == steps
    first = runs[0].logged[0][1]
    assert first["train/loss"] == pytest.approx(lines[0]["loss"])
    assert "train/iteration" not in first and "train/kind" not in first


def test_wandb_is_online_when_logged_in(tmp_path, monkeypatch):
    runs: list[FakeWandbRun] = []
    fake = fake_wandb(runs)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    open_tracker("wandb", tmp_path, name="x", config={}).close()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    open_tracker("wandb", tmp_path, name="x", config={}).close()
    assert [r.init["mode"] for r in runs] == ["online", "disabled"]


def test_tensorboard_event_file_holds_the_logged_scalars(poisson_file, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    summary = train(tiny_config(poisson_file, out, tracker="tensorboard"))
    assert summary["tracker"] == f"tensorboard --logdir {out / 'tensorboard'}"
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in loss] == [line["iteration"] for line in lines] == [2, 4, 6]
    assert [e.value for e in loss] == pytest.approx([line["loss"] for line in lines], rel=1e-6)
    assert "train/lr" in events.Tags()["scalars"]


def test_tracker_is_recorded_but_may_change_on_resume(poisson_file, tmp_path: Path):
    out = tmp_path / "run"
    train(tiny_config(poisson_file, out, stop_at=2))
    assert 'tracker = "none"' in (out / "config.toml").read_text()
    pytest.importorskip("tensorboard")
    train(tiny_config(poisson_file, out, resume=True, tracker="tensorboard"))
    assert (out / "tensorboard").is_dir()


def test_evaluation_lines_reach_the_tracker_under_their_kind(tmp_path, monkeypatch):
    runs: list[FakeWandbRun] = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(runs))
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = open_tracker("wandb", tmp_path, name="x", config={})
    tracker.log({"kind": "eval", "iteration": 40, "residual_mse": {"20": 0.5}, "note": "a",
                 "fidelity": {"mmd": 0.1, "flag": True, "nan": float("nan")}})  # fmt: skip
    assert runs[0].logged == [(40, {"eval/residual_mse/20": 0.5, "eval/fidelity/mmd": 0.1})]
