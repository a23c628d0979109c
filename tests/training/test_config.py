"""Filling in a run's settings: preset defaults for a new run, stored values on resume."""

from __future__ import annotations

import pytest

from pirf.errors import PirfError
from pirf.training import PRESET_DEFAULTS, TrainConfig, resolve_config
from pirf.training.config import trajectory_record


def test_new_run_takes_the_preset_defaults(poisson_file, tmp_path):
    config = resolve_config(TrainConfig(poisson_file, tmp_path / "run", preset="small"))
    defaults = PRESET_DEFAULTS["small"]
    assert (config.iters, config.batch, config.lr) == (
        defaults["iters"],
        defaults["batch"],
        defaults["lr"],
    )
    assert config.warmup == round(0.05 * defaults["iters"])
    assert (config.grad_clip, config.seed, config.lr_final_ratio) == (1.0, 0, 0.05)
    assert config.checkpoint_every == defaults["checkpoint_every"]
    short = resolve_config(TrainConfig(poisson_file, tmp_path / "r", preset="tiny", iters=10))
    assert short.warmup == 1 and short.lr == PRESET_DEFAULTS["tiny"]["lr"]


def test_resume_takes_stored_values_and_refuses_different_ones(poisson_file, tmp_path):
    first = resolve_config(
        TrainConfig(
            poisson_file,
            tmp_path / "run",
            preset="tiny",
            iters=100,
            lr=5e-4,
            model_overrides={"channel_mult": (1, 2)},
        )
    )
    stored = trajectory_record(first)
    resumed = resolve_config(TrainConfig(poisson_file, tmp_path / "run", resume=True), stored)
    assert (resumed.preset, resumed.lr, resumed.iters, resumed.warmup) == ("tiny", 5e-4, 100, 5)
    # the same value given again is accepted (tuples compare as the JSON they are stored as)
    again = TrainConfig(
        poisson_file,
        tmp_path / "run",
        resume=True,
        iters=200,
        model_overrides={"channel_mult": (1, 2)},
    )
    assert resolve_config(again, stored).iters == 200
    assert resolve_config(again, stored).warmup == 5  # the run's warm-up does not move
    with pytest.raises(PirfError, match=r"lr is 0\.001 but the run"):
        resolve_config(TrainConfig(poisson_file, tmp_path / "run", lr=1e-3, resume=True), stored)
