"""``pirf solve``: forward and inverse problems from partial observations, with a prior.

The first ``n`` reference fields are the problems: their observed values (whole channels or
random points, :mod:`pirf.solve.observe`) are the data, and the guided sampler
(:class:`pirf.solve.guidance.SolverGuidance`) draws one solution per field from the
model's prior, starting from the sampler's seeded noise of that field's index. Solutions
are written in physical units in the dataset layout (snapped as ``pirf sample`` snaps), so
``pirf evaluate`` and ``pirf data check`` read them; the summary gives the relative L2
error of each channel against the reference and the residual.

Each field has its own observations, so the sampler runs one micro-batch of fields at a
time with the guidance of those fields (:func:`pirf.sampling.generate` from the batch's
first index): the noise of a field never depends on the batch size.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pirf.baselines.guidance import residual_norm
from pirf.data.writer import check_destination, write_fields
from pirf.devices import resolve_device
from pirf.errors import PirfError, option
from pirf.evaluation.physics import residual_per_sample
from pirf.models.loaded import load_model
from pirf.models.reference import check_with_reference
from pirf.pdes.base import relative_l2
from pirf.sampling import default_batch_size, generate
from pirf.sampling.from_checkpoint import to_physical
from pirf.solve.guidance import (
    DEFAULT_PDE_FRACTION,
    SolverGuidance,
    check_step_size,
    observation_loss,
)
from pirf.solve.observe import Observation, check_observations, observation_mask

GUIDANCE_TERMS = ("obs", "pde")
DEFAULT_ZETA_OBS = 1.9
"""Observation step: the largest of 0.5, 1, 1.5, 1.9 (below the last steps' stability limit
2, :mod:`pirf.solve.guidance`), which scored best on validation fields in all eight cases
of docs/solve.md (Poisson and Darcy, base and PIRF priors, forward and inverse)."""
DEFAULT_ZETA_PDE = 1e-4
"""PDE step when ``pde`` guidance is asked for: in the validation sweeps of docs/solve.md it
lowered the residual in all eight cases without raising an error; larger steps helped
some cases and ruined others (1e-2 raised Darcy's residual a hundredfold)."""

ProgressFn = Callable[[int, int], None]


def check_guidance(terms: Sequence[str]) -> tuple[str, ...]:
    """The guidance terms, checked: ``obs``, optionally with ``pde``."""
    chosen = tuple(dict.fromkeys(term.strip() for term in terms if term.strip()))
    unknown = [term for term in chosen if term not in GUIDANCE_TERMS]
    if unknown or "obs" not in chosen:
        raise PirfError(
            f"{option('guidance')} takes obs or obs,pde, got {','.join(terms) or 'nothing'}"
        )
    return chosen


def per_channel_error(
    fields: torch.Tensor, reference: torch.Tensor, channels: Sequence[str]
) -> dict[str, float]:
    """Mean over samples of each channel's relative L2 error against ``reference``."""
    return {
        name: float(relative_l2(fields[:, index].double(), reference[:, index].double()).mean())
        for index, name in enumerate(channels)
    }


def solve(
    checkpoint: str | Path,
    reference: str | Path,
    observations: Sequence[Observation],
    out_file: str | Path,
    *,
    n: int = 16,
    steps: int = 20,
    guidance: Sequence[str] = ("obs",),
    zeta_obs: float = DEFAULT_ZETA_OBS,
    zeta_pde: float | None = None,
    pde_fraction: float = DEFAULT_PDE_FRACTION,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    force: bool = False,
    allow_import: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Solve the problems of the first ``n`` fields of ``reference`` with the prior
    ``checkpoint`` (a checkpoint or a run directory) and write the solutions to
    ``out_file``; returns the summary (JSON-able). Every input is checked before the
    model is loaded. ``allow_import``: see :func:`pirf.models.load_model`."""
    terms = check_guidance(guidance)
    pde_step = (DEFAULT_ZETA_PDE if zeta_pde is None else zeta_pde) if "pde" in terms else 0.0
    check_step_size("zeta_obs", zeta_obs)
    check_step_size("zeta_pde", pde_step)
    if not 0 <= pde_fraction <= 1:
        raise PirfError(f"the PDE-guided fraction must lie in [0, 1], got {pde_fraction}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PirfError(f"{option('steps')} must be a positive integer, got {steps!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise PirfError(
            f"{option('batch_size', flag='--batch')} must be a positive integer, "
            f"got {batch_size!r}"
        )
    destination = check_destination(out_file, force=force)
    data = check_with_reference(checkpoint, reference, n=n)
    resolution = (int(data.shape[2]), int(data.shape[3]))
    check_observations(observations, data.channels, resolution)
    torch_device = resolve_device(device)
    model = load_model(checkpoint, device=torch_device, allow_import=allow_import)
    pde, normalisation = model.pde, model.normalisation
    truth = data[:n].to(torch.float64)
    observed = normalisation.to_model(truth).to(torch.float32)
    mask = observation_mask(observations, pde.channels, resolution, seed)
    residual = functools.partial(residual_norm, pde, normalisation)
    size = batch_size or default_batch_size(model.shape, torch_device)
    pieces, result = [], None
    started = time.perf_counter()
    if progress is not None:
        progress(0, n)
    for first in range(0, n, size):
        take = min(size, n - first)
        wrapper = SolverGuidance(
            observation_loss(
                mask.to(torch_device), observed[first : first + take].to(torch_device)
            ),
            zeta_obs,
            residual if pde_step > 0 else None,
            pde_step,
            pde_fraction,
        )
        result = generate(
            model.denoiser,
            take,
            model.shape,
            seed,
            steps=steps,
            device=torch_device,
            batch_size=take,
            step_wrapper=wrapper,
            start=first,
        )
        pieces.append(result.samples)
        if progress is not None:
            progress(first + take, n)
    seconds = time.perf_counter() - started
    fields = to_physical(model, torch.cat(pieces))
    if not torch.isfinite(fields).all():
        raise PirfError(
            f"the guided sampler produced NaN or inf values; try a smaller {option('zeta_obs')} "
            f"or {option('zeta_pde')}"
        )
    errors = per_channel_error(fields, truth, pde.channels)
    mse, _, _ = residual_per_sample(pde, fields)
    reference_mse, _, _ = residual_per_sample(pde, truth)
    settings = {
        "observe": [o.text for o in observations],
        "observed_points": {
            name: int(mask[index].sum()) for index, name in enumerate(pde.channels)
        },
        "guidance": list(terms),
        "zeta_obs": float(zeta_obs),
        "zeta_pde": float(pde_step),
        "pde_fraction": float(pde_fraction),
        "steps": steps,
        "seed": seed,
    }
    write_fields(
        destination,
        fields.float(),
        pde,
        normalisation=normalisation,
        attrs={
            "source": "solve",
            "checkpoint": str(model.path),
            "checkpoint_kind": model.kind,
            "reference": str(reference),
            "sampler": "heun",
            "nfe_per_sample": result.nfe_per_sample,
            "seconds_per_sample": seconds / n,
            "snapped": True,
            **settings,
            "split": "samples",
        },
        force=force,
    )
    return {
        "path": str(destination),
        "pde": pde.name,
        "checkpoint": str(model.path),
        "checkpoint_kind": model.kind,
        "reference": str(reference),
        "n": n,
        "relative_l2": errors,
        "residual_mse": float(mse.mean()),
        "residual_mse_median": float(mse.median()),
        "residual_mse_reference": float(reference_mse.mean()),
        **settings,
        "nfe_per_sample": result.nfe_per_sample,
        "backward_per_sample": result.backward_per_sample,
        "guided_steps": result.guided_steps,
        "seconds": seconds,
    }


__all__ = [
    "DEFAULT_ZETA_OBS",
    "DEFAULT_ZETA_PDE",
    "GUIDANCE_TERMS",
    "check_guidance",
    "per_channel_error",
    "solve",
]
