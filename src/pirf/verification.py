"""Verification of a PDE's data: is the ground truth a solution, by the PDE's own measures?

For a dataset file this reports the residual floor of the stored (float32) fields, the
residual of the same fields perturbed by a small relative noise (how strongly the residual
separates solutions from near-solutions) and the solver consistency (re-solving from the
stored inputs). The demo prints it for every benchmark; it is also what a user runs on
data for a new PDE before training on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import pirf.data
from pirf.errors import PirfError

NOISE_LEVEL = 1e-2
"""Relative noise (times each channel's standard deviation) of the perturbed comparison."""


def perturbed_residual_mse(
    pde: pirf.pdes.PDE, fields: torch.Tensor, *, noise_level: float = NOISE_LEVEL, seed: int = 0
) -> float:
    """Mean residual MSE of ``fields`` plus white noise of ``noise_level`` channel std."""
    generator = torch.Generator().manual_seed(seed)
    fields = fields.to(torch.float64)
    std = fields.transpose(0, 1).flatten(1).std(dim=1).view(1, -1, 1, 1)
    noise = torch.randn(fields.shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        residual = pde.residual(fields + noise_level * std * noise)
    return float(residual.flatten(1).pow(2).mean(dim=1).mean())


def verify_file(path: str | Path, *, consistency_samples: int = 16) -> dict[str, Any]:
    """The verification numbers of one dataset file (JSON-friendly)."""
    report = pirf.data.check(path)
    with pirf.data.load(path) as data:
        fields = data[: min(len(data), 256)].to(torch.float64)
        pde = data.pde
    perturbed = perturbed_residual_mse(pde, fields)
    floor = report["residual"]["mse"]
    try:
        with torch.no_grad():
            consistency = pde.consistency(fields[:consistency_samples])
        consistency_mean: float | None = float(consistency.mean())
    except PirfError:
        consistency_mean = None
    return {
        "pde": report["pde"],
        "n": report["n"],
        "shape": report["shape"],
        "residual": report["residual"],
        "perturbed_residual_mse": perturbed,
        "noise_level": NOISE_LEVEL,
        "floor_to_perturbed": floor / perturbed if perturbed > 0 else None,
        "consistency_rel_l2": consistency_mean,
    }
