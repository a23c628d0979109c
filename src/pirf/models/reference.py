"""A checkpoint opened together with held-out fields of its own problem.

Commands that compare a model with data field by field (``pirf diagnose``, ``pirf solve``)
need the first ``n`` fields of a reference file and a model of the same PDE, channels and
grid. :func:`load_with_reference` checks all of that from the file headers and
``checkpoint.json`` before it reads any weights, so a wrong pairing fails at once with one
line, not after minutes of work.
"""

from __future__ import annotations

from pathlib import Path

import torch

import pirf.data
from pirf.errors import PirfError, option
from pirf.models.checkpoint import check_matches, read_checkpoint_info
from pirf.models.loaded import LoadedModel, load_model, resolve_checkpoint


def check_with_reference(
    checkpoint: str | Path, reference: str | Path, *, n: int
) -> pirf.data.PDEDataset:
    """The opened reference file, once it is known to hold at least ``n`` fields of the
    checkpoint's PDE, channels and resolution (nothing heavy is read)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PirfError(f"{option('n')} must be a positive integer, got {n!r}")
    directory, _ = resolve_checkpoint(checkpoint)
    info = read_checkpoint_info(directory)
    data = pirf.data.load(reference)
    try:
        check_matches(info, pde=data.pde.name, channels=data.channels, resolution=data.shape[2:])
    except PirfError as error:
        hint = f"give a {option('reference')} file of the model's problem"
        raise PirfError(f"{error}; {hint}") from None
    if len(data) < n:
        raise PirfError(
            f"{reference} holds {len(data)} fields, fewer than {option('n')} {n}; "
            "give a larger reference file or a smaller count"
        )
    return data


def load_with_reference(
    checkpoint: str | Path,
    reference: str | Path,
    *,
    n: int,
    device: torch.device | str = "cpu",
    allow_import: bool = False,
) -> tuple[LoadedModel, pirf.data.PDEDataset]:
    """The model ``checkpoint`` names (a checkpoint or a run directory,
    :func:`~pirf.models.resolve_checkpoint`) on ``device``, and the reference file, checked
    by :func:`check_with_reference` first. ``allow_import``: see :func:`load_model`."""
    data = check_with_reference(checkpoint, reference, n=n)
    return load_model(checkpoint, device=device, allow_import=allow_import), data


__all__ = ["check_with_reference", "load_with_reference"]
