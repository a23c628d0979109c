"""Physics metrics: is a generated sample a solution of its PDE?

* The residual: per sample, the mean square (MSE) and mean absolute value (MAE) of
  ``pde.residual`` over every point (and residual channel) where it is defined, in physical
  units and float64, whatever precision the samples were made in.
* The reference residual (on request): the same statistics of
  ``pde.reference_residual``, the residual as the paper's code defines it (its grid,
  padding and spacing), so numbers can be set beside the paper's.
* Solver consistency: ``pde.consistency`` re-solves the sample's solution from its input
  channels and returns the relative L2 distance per sample; it answers the same question
  in the solution's own norm, where the residual's stencil amplifies fine-scale noise.

Both are computed after :meth:`~pirf.pdes.PDE.snap` (e.g. Darcy's coefficient is projected
onto its two values) unless ``snap=False``, in batches of ``batch_size`` samples on the
fields' device. Per-sample values are summarised by :func:`~pirf.summaries.summarise`.
"""

from __future__ import annotations

from typing import Any

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.residuals import physical_batches, residual_per_sample
from pirf.summaries import summarise


def residual_summary(
    pde: PDE,
    fields: torch.Tensor,
    *,
    snap: bool = True,
    batch_size: int = 256,
    definition: str = "own",
) -> dict[str, Any]:
    """``{"mse": summary, "mae": summary, "points": P, "snapped": bool}`` for physical
    ``fields (N, C, H, W)``; each summary has ``mean, median, p90, max, count, nonfinite``.
    ``definition="reference"``: the reference code's residual (``PDE.reference_residual``),
    and the result also says ``"definition": "reference"``."""
    mse, mae, points = residual_per_sample(
        pde, fields, snap=snap, batch_size=batch_size, definition=definition
    )
    summary = {"mse": summarise(mse), "mae": summarise(mae), "points": points, "snapped": snap}
    if definition != "own":
        summary["definition"] = definition
    return summary


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
        for chunk in physical_batches(pde, fields, batch_size, snap):
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
