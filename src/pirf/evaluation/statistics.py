"""PDE-specific statistics: scalar per-sample summaries that a benchmark cares about.

A statistic is a function ``(pde, fields) -> (N,)`` of physical (snapped) fields,
registered under a PDE name; evaluation reports the mean over samples beside the mean over
reference data. Built in: Darcy's ``a_high_fraction``, the fraction of nodes where the
snapped coefficient takes its high value (``a = 12``), which exposes coefficient fields of
the wrong statistics (too many or too few high-permeability inclusions) that the residual
cannot see: any ``a`` has a solution.

Users add their own with :func:`register_statistic`, e.g.::

    register_statistic("heat", "mean_temperature", lambda pde, f: f[:, 1].mean(dim=(-2, -1)))
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE

Statistic = Callable[[PDE, torch.Tensor], torch.Tensor]
"""``statistic(pde, fields)``: per-sample values ``(N,)`` of physical fields ``(N, C, H, W)``."""

_STATISTICS: dict[str, dict[str, Statistic]] = {}


def register_statistic(
    pde_name: str, name: str, statistic: Statistic, *, replace: bool = False
) -> Statistic:
    """Register ``statistic`` as ``name`` for the PDE called ``pde_name``; returns it."""
    registered = _STATISTICS.setdefault(pde_name, {})
    if name in registered and not replace and registered[name] is not statistic:
        raise PirfError(f"PDE '{pde_name}' already has a statistic '{name}'; pass replace=True")
    registered[name] = statistic
    return statistic


def statistics_for(pde: PDE) -> dict[str, Statistic]:
    """The statistics registered for ``pde.name`` (a copy; empty if none)."""
    return dict(_STATISTICS.get(pde.name, {}))


def darcy_high_fraction(pde: PDE, fields: torch.Tensor) -> torch.Tensor:
    """Fraction of nodes with ``a`` above the midpoint of ``a_low`` and ``a_high`` (7.5 for
    the benchmark's 3 and 12): after snapping, the fraction of ``a = a_high`` cells."""
    params = pde.params
    threshold = 0.5 * (float(params.get("a_low", 3.0)) + float(params.get("a_high", 12.0)))
    a = fields[:, pde.channels.index("a")]
    return (a > threshold).to(torch.float64).mean(dim=(-2, -1))


register_statistic("darcy", "a_high_fraction", darcy_high_fraction)
