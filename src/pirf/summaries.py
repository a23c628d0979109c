"""Summaries of per-sample values: mean, median and 90th percentile.

A mean alone can hide a few broken samples, so every per-sample metric is reported with
its median and 90th percentile too. Samples whose value is NaN or infinite (a diverged
sampler) are counted in ``nonfinite`` and left out of the statistics, which are then over
the finite ones; ``None`` stands for a statistic with no finite value (JSON has no NaN).
"""

from __future__ import annotations

import torch


def summarise(values: torch.Tensor) -> dict[str, float | int | None]:
    """``mean``, ``median``, ``p90`` (linear interpolation), ``max``, ``count`` and
    ``nonfinite`` of a 1-D tensor of per-sample values, as plain Python numbers."""
    values = values.detach().to(device="cpu", dtype=torch.float64).flatten()
    finite = values[torch.isfinite(values)]
    result: dict[str, float | int | None] = {
        "mean": None,
        "median": None,
        "p90": None,
        "max": None,
        "count": int(values.numel()),
        "nonfinite": int(values.numel() - finite.numel()),
    }
    if finite.numel():
        result["mean"] = float(finite.mean())
        result["median"] = float(torch.quantile(finite, 0.5))
        result["p90"] = float(torch.quantile(finite, 0.9))
        result["max"] = float(finite.max())
    return result
