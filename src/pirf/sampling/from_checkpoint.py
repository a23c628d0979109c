"""Checkpoint in, samples file out: the ``pirf sample`` stage of the pipeline.

Samples are written in the dataset layout (docs/data-format.md), in physical units, so
``pirf data check`` and ``pirf evaluate`` read them like data. The file carries the
checkpoint's normalisation and the sampling settings (sampler, steps, seed, NFE, time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pirf.data.writer import check_destination, write_fields
from pirf.devices import resolve_device
from pirf.errors import PirfError
from pirf.models.loaded import LoadedModel, load_model
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling.generate import ProgressFn, SamplingResult, generate
from pirf.sampling.precision import Precision


def to_physical(
    model: LoadedModel | tuple[PDE, Normalisation], samples: torch.Tensor, *, snap: bool = True
) -> torch.Tensor:
    """Model-space samples -> physical fields, projected by ``pde.snap`` unless ``snap=False``."""
    pde, normalisation = (
        (model.pde, model.normalisation) if isinstance(model, LoadedModel) else model
    )
    fields = normalisation.to_physical(samples.to(torch.float64))
    return pde.snap(fields) if snap else fields


def sample_to_file(
    checkpoint: str | Path,
    out: str | Path,
    *,
    n: int,
    seed: int = 0,
    steps: int = 20,
    method: str = "heun",
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    bf16: bool = False,
    fp32_steps: int = 2,
    snap: bool = True,
    ema: bool = True,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Sample ``n`` fields from a checkpoint (or a run directory's best or final one, see
    :func:`pirf.models.resolve_checkpoint`) into ``out``; returns the summary (JSON-able)."""
    destination = check_destination(out, force=force)
    torch_device = resolve_device(device)
    model = load_model(checkpoint, device=torch_device, ema=ema)
    result: SamplingResult = generate(
        model.denoiser,
        n,
        model.shape,
        seed,
        steps=steps,
        method=method,
        device=torch_device,
        batch_size=batch_size,
        precision=Precision(bf16=bf16, fp32_steps=fp32_steps),
        progress=progress,
    )
    fields = to_physical(model, result.samples, snap=snap)
    if not torch.isfinite(fields).all():
        raise PirfError("the sampler produced NaN or inf values; the checkpoint may be broken")
    attrs = {
        "source": "model",
        "checkpoint": str(model.path),
        "checkpoint_kind": model.kind,
        "sampler": method,
        "steps": steps,
        "nfe_per_sample": result.nfe_per_sample,
        "seconds_per_sample": result.seconds_per_sample,
        "snapped": snap,
        "bf16": bf16,
        "fp32_steps": fp32_steps,
    }
    write_fields(
        destination,
        fields.float(),
        model.pde,
        normalisation=model.normalisation,
        attrs={**attrs, "seed": seed, "split": "samples"},
        force=force,
    )
    return {
        "path": str(destination),
        "pde": model.pde.name,
        "n": n,
        "shape": list(fields.shape),
        "seed": seed,
        **attrs,
        "seconds": result.seconds,
        "samples_per_s": result.samples_per_second,
        "batch_size": result.batch_size,
    }
