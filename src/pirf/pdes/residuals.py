"""Per-sample residual statistics of physical fields: the quantity data checks and the
evaluation protocol both report.

Per sample, the mean square (MSE) and mean absolute value (MAE) of ``pde.residual`` over
every point where it is defined, in float64, after :meth:`~pirf.pdes.PDE.snap` unless
``snap=False``, in batches of ``batch_size`` samples on the fields' device. With
``definition="reference"`` the residual is :meth:`~pirf.pdes.PDE.reference_residual`, the
paper code's definition, scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from pirf.errors import PirfError
from pirf.pdes.base import PDE


def physical_batches(
    pde: PDE, fields: torch.Tensor, batch_size: int, snap: bool
) -> Iterator[torch.Tensor]:
    """Float64 chunks of ``fields``, snapped if asked."""
    if batch_size <= 0:
        raise PirfError(f"the batch size must be positive, got {batch_size}")
    pde.check_fields(fields)
    for start in range(0, fields.shape[0], batch_size):
        chunk = fields[start : start + batch_size].detach().to(torch.float64)
        yield pde.snap(chunk) if snap else chunk


DEFINITIONS = ("own", "reference")
"""Which residual: pirf's own (``PDE.residual``) or the reference code's
(``PDE.reference_residual``)."""


def residual_function(pde: PDE, definition: str = "own") -> Callable[[torch.Tensor], torch.Tensor]:
    """The residual ``definition`` names for ``pde``; a one-line error for an unknown
    definition or a PDE without a reference residual."""
    if definition not in DEFINITIONS:
        raise PirfError(f"unknown residual '{definition}'; use one of {', '.join(DEFINITIONS)}")
    if definition == "own":
        return pde.residual
    if not pde.has_reference_residual:
        raise PirfError(
            f"PDE '{pde.name}' has no reference residual (define one with a reference_residual "
            "method or define_pde(reference_residual=...)); evaluate its own residual only"
        )
    return pde.reference_residual


def residual_per_sample(
    pde: PDE,
    fields: torch.Tensor,
    *,
    snap: bool = True,
    batch_size: int = 256,
    definition: str = "own",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample residual MSE and MAE ``(N,)`` (float64, CPU) of physical ``fields``, and
    the number of residual values per sample (``definition``: see :data:`DEFINITIONS`)."""
    function = residual_function(pde, definition)
    mse, mae, points = [], [], 0
    with torch.no_grad():
        for chunk in physical_batches(pde, fields, batch_size, snap):
            residual = function(chunk)
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


__all__ = ["DEFINITIONS", "physical_batches", "residual_function", "residual_per_sample"]
