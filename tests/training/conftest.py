"""Fixtures of the training tests: a small Poisson dataset and a fast configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import pirf.data
from pirf.training import TrainConfig

TINY_NET = {"base_channels": 8}
"""A 78k-parameter version of the tiny U-Net: a step on 8 x 8 fields takes milliseconds."""
WITH_DROPOUT = {"base_channels": 8, "dropout": 0.2}
"""The same with dropout, whose masks must also be reproduced by a resumed run."""


@pytest.fixture(scope="session")
def poisson_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 Poisson samples on an 8 x 8 grid (seed 0)."""
    path = tmp_path_factory.mktemp("data") / "poisson8.h5"
    pirf.data.generate("poisson", 16, 8, 0, path)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: bitwise comparisons between processes use the same kernels,
    and small steps do not suffer from thread oversubscription on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(data: Path, out: Path, **changes: Any) -> TrainConfig:
    """A run of a few iterations of the small network, no figures, no progress output."""
    settings: dict[str, Any] = {
        "preset": "tiny",
        "iters": 6,
        "batch": 4,
        "lr": 2e-3,
        "warmup": 2,
        "ema_halflife": 8.0,
        "model_overrides": dict(TINY_NET),
        "device": "cpu",
        "checkpoint_every": 2,
        "figure_every": 0,
        "log_every": 2,
        "progress": False,
    }
    settings.update(changes)
    return TrainConfig.of(data=data, out=out, **settings)
