"""Where Kolmogorov samples put the forcing's phase, and what it costs in residual.

The flow is driven by ``f = -A cos(k_f y)``: in every data sample the middle frame's
projection on ``cos(k_f y)``, ``c = 2 mean(w1 cos(k_f y))``, is negative: the mean flow
follows the forcing. A flow shifted in ``y`` by half the forcing's
period is a solution of the same equation with ``-f``: its ``c`` is positive and its
residual is about ``2 f``, a mean square of ``2 A^2`` (32 for ``A = 4``), whatever else
is right about it. This script splits a samples file (``pirf sample`` output, or data) by
the sign of ``c`` and prints, per side, how many samples lie there and their residual MSE.

Usage (numbers in docs/kolmogorov.md)::

    python benchmarks/kolmogorov_phase.py DATA/test.h5 samples.h5 [more.h5 ...] [--json]
"""

from __future__ import annotations

import argparse
import json

import torch

from pirf.data.loader import PDEDataset
from pirf.models.layers import position_features
from pirf.pdes.kolmogorov import Kolmogorov


def phase_split(path: str) -> dict[str, float | int | str]:
    """Counts and residual MSEs of the samples in ``path`` by the sign of ``c``."""
    data = PDEDataset(path)
    if not isinstance(data.pde, Kolmogorov):
        raise SystemExit(f"error: {path} holds {data.pde.name} fields, not kolmogorov")
    fields = torch.as_tensor(data[0 : len(data)]).double()
    # cos(k_f y): the first of the position channels the model sees for this PDE.
    forcing_shape = position_features(
        data.pde.position_harmonics(), tuple(fields.shape[-2:]), dtype=torch.float64
    )[0]
    projection = 2.0 * (fields[:, 1] * forcing_shape).mean(dim=(-2, -1))
    mse = data.pde.residual(fields).square().mean(dim=(-3, -2, -1))
    wrong = projection > 0
    row: dict[str, float | int | str] = {
        "file": path,
        "n": len(data),
        "wrong_phase_fraction": float(wrong.double().mean()),
        "residual_mse": float(mse.mean()),
        "residual_mse_median": float(mse.median()),
    }
    for name, mask in (("right", ~wrong), ("wrong", wrong)):
        row[f"{name}_n"] = int(mask.sum())
        row[f"{name}_residual_mse"] = float(mse[mask].mean()) if mask.any() else float("nan")
        row[f"{name}_projection"] = float(projection[mask].mean()) if mask.any() else float("nan")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="Kolmogorov fields files (data or samples)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    args = parser.parse_args()
    for path in args.files:
        row = phase_split(path)
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"{path}: {row['n']} samples, wrong phase {100 * row['wrong_phase_fraction']:.1f} %; "
            f"residual MSE {row['residual_mse']:.4g} (median {row['residual_mse_median']:.4g}); "
            f"right phase: {row['right_n']} at {row['right_residual_mse']:.4g}, "
            f"wrong phase: {row['wrong_n']} at {row['wrong_residual_mse']:.4g}"
        )


if __name__ == "__main__":
    main()
