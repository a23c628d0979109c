"""``check``: is a fields file intact, finite and a solution of its PDE?

Reads the whole file in batches (so HDF5 checksums and finiteness are verified for every
sample), recomputes per-channel statistics, and evaluates the PDE residual in float64 on the
stored float32 values. Per sample, MSE and MAE are the mean of ``R^2`` and ``|R|`` over all
points (and channels) of the residual; the report gives their mean, median and 90th
percentile over samples, because a mean can hide a few broken samples.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pirf.data.loader import load
from pirf.data.writer import stats_by_channel
from pirf.devices import resolve_device
from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import ChannelStats
from pirf.pdes.residuals import residual_per_sample
from pirf.summaries import summarise as summary_of

DEFAULT_BATCH_SIZE = 64


def residual_errors(
    pde: PDE, fields: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample residual MSE and MAE (float64, CPU) of a batch, and the residual's size.

    Stored data is checked as it is: no snapping (see :mod:`pirf.evaluation.physics`).
    """
    return residual_per_sample(pde, fields.to(device), snap=False, batch_size=len(fields))


def summarise(mse: np.ndarray, mae: np.ndarray) -> dict[str, float]:
    """Mean, median and 90th percentile of per-sample MSE and MAE, in the check's flat
    layout (from :func:`pirf.summaries.summarise`)."""
    by_norm = {"mse": summary_of(torch.as_tensor(mse)), "mae": summary_of(torch.as_tensor(mae))}
    return {
        **{norm: by_norm[norm]["mean"] for norm in ("mse", "mae")},
        **{
            f"{norm}_{stat}": by_norm[norm][stat]
            for norm in ("mse", "mae")
            for stat in ("median", "p90")
        },
    }


def check(
    path: str | Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Read and verify the fields file at ``path``; return the report (JSON-able).

    Keys: ``path``, ``pde``, ``params``, ``n``, ``resolution``, ``channels``, ``shape``,
    ``split``, ``seed``, ``source``, ``format_version``, ``normalisation``,
    ``channel_stats`` (per channel ``mean, std, min, max``), ``residual`` (``mse, mae,
    mse_median, mse_p90, mae_median, mae_p90, points``), ``grid`` (one line per axis: where
    pirf's values live), ``imported`` (None, or for ``pirf data import`` files: ``format``,
    ``source``, ``channels``, and ``grid``/``grid_matches`` comparing the source's
    coordinates with pirf's), ``seconds``. Raises
    :class:`PirfError` for a missing, corrupt or non-pirf file and for NaN/inf values.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise PirfError(f"the batch size must be positive, got {batch_size!r}")
    torch_device = resolve_device(device)
    start = time.perf_counter()
    with load(path) as data:
        stats = ChannelStats(len(data.channels))
        mse_parts, mae_parts = [], []
        points = 0
        for _, fields in data.batches(batch_size):
            stats.update(fields)
            mse, mae, points = residual_errors(data.pde, fields, torch_device)
            mse_parts.append(mse)
            mae_parts.append(mae)
        mse_all = torch.cat(mse_parts).numpy()
        mae_all = torch.cat(mae_parts).numpy()
        if not (np.isfinite(mse_all).all() and np.isfinite(mae_all).all()):
            raise PirfError(f"{path}: the residual of PDE '{data.pde.name}' is not finite")
        return {
            "path": str(path),
            "pde": data.pde.name,
            "params": data.params,
            "n": len(data),
            "resolution": data.resolution,
            "channels": list(data.channels),
            "input_channels": list(data.input_channels),
            "shape": list(data.shape),
            "split": data.split,
            "seed": data.seed,
            "source": data.attrs.get("source"),
            "format_version": data.header.format_version,
            "normalisation": data.normalisation.to_json(),
            "channel_stats": stats_by_channel(stats, data.channels),
            "residual": {**summarise(mse_all, mae_all), "points": points},
            "grid": data.pde.grid.describe(data.shape[2:]),
            "imported": imported(data.attrs),
            "seconds": time.perf_counter() - start,
        }


def imported(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """Where an imported file came from and how the source's coordinates compare with the
    PDE's grid (``pirf data import`` records it), or None for a file made by pirf."""
    if "import_format" not in attrs:
        return None
    grid = _json(attrs.get("import_grid")) or []
    known = [axis.get("matches") for axis in grid if axis.get("matches") is not None]
    return {
        "format": attrs["import_format"],
        "source": attrs.get("import_source"),
        "channels": _json(attrs.get("import_channels")),
        "grid": grid,
        "grid_matches": all(known) if known else None,
    }


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
