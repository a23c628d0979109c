"""Fixtures of the data-layer tests: the toy PDEs registered, and a small dataset file."""

from __future__ import annotations

import pytest

import pirf.data
import pirf.pdes
from tests.data.toy_pdes import ResidualOnly, Toy


@pytest.fixture(autouse=True)
def toy_pdes() -> None:
    """Register the toy PDEs by name (idempotent)."""
    pirf.pdes.register(Toy, replace=True)
    pirf.pdes.register(ResidualOnly, replace=True)


@pytest.fixture
def toy_file(tmp_path):
    """A 12-sample toy dataset at resolution 8 (preset 'tiny', scale 2), seed 5."""
    path = tmp_path / "toy.h5"
    pirf.data.generate("toy", 12, 8, 5, path, batch_size=5)
    return path
