"""Smoke test with a built-in benchmark (skipped until its module exists): generate, load
and check a tiny file; the stored float32 data must remain a solution, far better than the
same data with 0.1% noise on the solution channels."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import pirf.data


@pytest.mark.parametrize("name", ["poisson"])
def test_builtin_pde_round_trip(tmp_path, name):
    if importlib.util.find_spec(f"pirf.pdes.{name}") is None:
        pytest.skip(f"pirf.pdes.{name} is not available")
    path = tmp_path / f"{name}.h5"
    summary = pirf.data.generate(name, 3, 32, 0, path, split="test")
    report = pirf.data.check(path)
    assert report["pde"] == name and report["n"] == 3 and summary.preset == "tiny"
    data = pirf.data.load(path)
    fields = data.fields().double()
    solution = len(data.input_channels)
    noisy = fields.clone()
    generator = torch.Generator().manual_seed(0)
    scale = fields[:, solution:].abs().max()
    noise = torch.randn(noisy[:, solution:].shape, generator=generator, dtype=torch.float64)
    noisy[:, solution:] += 1e-3 * scale * noise
    noisy_mse = data.pde.residual(noisy).pow(2).mean().item()
    assert report["residual"]["mse"] < 1e-3 * noisy_mse
