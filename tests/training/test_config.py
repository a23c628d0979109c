"""Filling in a run's settings: preset defaults for a new run, stored values on resume,
and the configuration file that reproduces a run."""

from __future__ import annotations

import pytest

from pirf.errors import PirfError
from pirf.models import PRESETS
from pirf.settings import record
from pirf.training import PRESET_DEFAULTS, TrainConfig, resolve
from pirf.training.config import MODEL_PRESETS, stored_settings


def config(data, out, **values):
    return TrainConfig.of(data=data, out=out, **values)


def test_new_run_takes_the_preset_defaults(poisson_file, tmp_path):
    resolved = resolve(config(poisson_file, tmp_path / "run", preset="small"))
    defaults = PRESET_DEFAULTS["small"]
    optimiser = resolved.optimiser
    assert (optimiser.iters, optimiser.batch, optimiser.lr) == (
        defaults["iters"],
        defaults["batch"],
        defaults["lr"],
    )
    assert optimiser.warmup == round(0.05 * defaults["iters"])
    assert (optimiser.grad_clip, optimiser.seed, optimiser.lr_final_ratio) == (1.0, 0, 0.05)
    assert resolved.run.checkpoint_every == defaults["checkpoint_every"]
    short = resolve(config(poisson_file, tmp_path / "r", preset="tiny", iters=10))
    assert short.optimiser.warmup == 1 and short.optimiser.lr == PRESET_DEFAULTS["tiny"]["lr"]
    assert tuple(PRESETS) == MODEL_PRESETS  # the light list names every model preset


def test_resume_takes_stored_values_and_refuses_different_ones(poisson_file, tmp_path):
    first = resolve(
        config(
            poisson_file,
            tmp_path / "run",
            preset="tiny",
            iters=100,
            lr=5e-4,
            model_overrides={"channel_mult": (1, 2)},
        )
    )
    stored = stored_settings(record(first))
    resumed = resolve(config(poisson_file, tmp_path / "run", resume=True), stored)
    values = (resumed.network.preset, resumed.optimiser.lr, resumed.optimiser.iters)
    assert values == ("tiny", 5e-4, 100) and resumed.optimiser.warmup == 5
    # the same value given again is accepted (tuples compare as the JSON they are stored as)
    again = config(
        poisson_file,
        tmp_path / "run",
        resume=True,
        iters=200,
        model_overrides={"channel_mult": (1, 2)},
    )
    assert resolve(again, stored).optimiser.iters == 200
    assert resolve(again, stored).optimiser.warmup == 5  # the run's warm-up does not move
    with pytest.raises(PirfError, match=r"lr is 0\.001 but the run"):
        resolve(config(poisson_file, tmp_path / "run", lr=1e-3, resume=True), stored)
