"""Physics metrics: is a generated sample a solution of its PDE?

* The residual: per sample, the mean square (MSE) and mean absolute value (MAE) of
  ``pde.residual`` over every point (and residual channel) where it is defined, in physical
  units and float64, whatever precision the samples were made in.
* Solver consistency: ``pde.consistency`` re-solves the sample's solution from its input
  channels and returns the relative L2 distance per sample; it answers the same question
  in the solution's own norm, where the residual's stencil amplifies fine-scale noise.

Both are computed after :meth:`~pirf.pdes.PDE.snap` (e.g. Darcy's coefficient is projected
onto its two values) unless ``snap=False``, in batches of ``batch_size`` samples on the
fields' device. Per-sample values are summarised by :func:`~pirf.evaluation.summary.summarise`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from pirf.errors import PirfError
from pirf.evaluation.summary import summarise
from pirf.pdes.base import PDE


def _batches(pde: PDE, fields: torch.Tensor, batch_size: int, snap: bool) -> Iterator[torch.Tensor]:
    """Float64 chunks of ``fields``, snapped if asked."""
    if batch_size <= 0:
        raise PirfError(f"the batch size must be positive, got {batch_size}")
    pde.check_fields(fields)
    for start in range(0, fields.shape[0], batch_size):
        chunk = fields[start : start + batch_size].detach().to(torch.float64)
        yield pde.snap(chunk) if snap else chunk


def residual_per_sample(
    pde: PDE, fields: torch.Tensor, *, snap: bool = True, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample residual MSE and MAE ``(N,)`` (float64, CPU) of physical ``fields``, and
    the number of residual values per sample."""
    mse, mae, points = [], [], 0
    with torch.no_grad():
        for chunk in _batches(pde, fields, batch_size, snap):
            residual = pde.residual(chunk)
            if residual.ndim < 2 or residual.shape[0] != chunk.shape[0]:
                raise PirfError(
                    f"PDE '{pde.name}' residual returned shape {tuple(residual.shape)} for a "
                    f"batch of {chunk.shape[0]}"
                )
            flat = residual.to(torch.float64).flatten(1)
            points = flat.shape[1]
            mse.append(flat.pow(2).mean(dim=1).cpu())
            mae.append(flat.abs().mean(dim=1).cpu())
    return torch.cat(mse), torch.cat(mae), points


def residual_summary(
    pde: PDE, fields: torch.Tensor, *, snap: bool = True, batch_size: int = 256
) -> dict[str, Any]:
    """``{"mse": summary, "mae": summary, "points": P, "snapped": bool}`` for physical
    ``fields (N, C, H, W)``; each summary has ``mean, median, p90, max, count, nonfinite``."""
    mse, mae, points = residual_per_sample(pde, fields, snap=snap, batch_size=batch_size)
    return {"mse": summarise(mse), "mae": summarise(mae), "points": points, "snapped": snap}


def has_consistency(pde: PDE) -> bool:
    """Whether ``pde`` implements :meth:`~pirf.pdes.PDE.consistency` (has a solver)."""
    return type(pde).consistency is not PDE.consistency


def consistency_per_sample(
    pde: PDE, fields: torch.Tensor, *, snap: bool = True, batch_size: int = 256
) -> torch.Tensor:
    """Per-sample relative L2 distance ``(N,)`` (float64, CPU) to the solver's solution."""
    if not has_consistency(pde):
        raise PirfError(f"PDE '{pde.name}' has no solver; solver consistency is unavailable")
    values = []
    with torch.no_grad():
        for chunk in _batches(pde, fields, batch_size, snap):
            values.append(pde.consistency(chunk).detach().to(torch.float64).cpu().flatten())
    return torch.cat(values)


def consistency_summary(
    pde: PDE, fields: torch.Tensor, *, snap: bool = True, batch_size: int = 256
) -> dict[str, Any] | None:
    """Summary of :func:`consistency_per_sample` plus ``snapped``; ``None`` if the PDE has
    no solver."""
    if not has_consistency(pde):
        return None
    values = consistency_per_sample(pde, fields, snap=snap, batch_size=batch_size)
    return {**summarise(values), "snapped": snap}
