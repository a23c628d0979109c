"""Checkpoint in, samples file out: the ``pirf sample`` stage of the pipeline.

Samples are written in the dataset layout (docs/data-format.md), in physical units, so
``pirf data check`` and ``pirf evaluate`` read them like data. The file carries the
checkpoint's normalisation and the sampling settings (sampler, steps, seed, NFE, time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pirf.checks import check_count, check_device, check_model_checkpoint, check_output_file
from pirf.data.writer import write_fields
from pirf.errors import PirfError
from pirf.models.loaded import LoadedModel, load_model
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling.generate import ProgressFn, SamplingResult, generate
from pirf.sampling.precision import Precision
from pirf.sampling.samplers import step_function


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
    bf16: bool = True,
    fp32_steps: int = 2,
    snap: bool = True,
    ema: bool = True,
    force: bool = False,
    progress: ProgressFn | None = None,
    allow_import: bool = False,
) -> dict[str, Any]:
    """Sample ``n`` fields from a checkpoint into ``out``; returns the summary (JSON-able).

    ``checkpoint`` may be a run directory: its ``best/`` if it has one, else its final
    ``checkpoint/`` (the summary's ``checkpoint`` and ``checkpoint_kind`` say which).
    Every argument is checked before the model is loaded; the file appears only when
    complete. ``allow_import``: see :func:`pirf.models.load_model`."""
    check_count("n", n)
    check_count("steps", steps)
    check_count("seed", seed, minimum=0)
    if batch_size is not None:
        check_count("batch_size", batch_size, flag="--batch")
    check_count("fp32_steps", fp32_steps, minimum=0)
    step_function(method)
    torch_device = check_device(device)
    destination = check_output_file(out, "out", force=force, flag="--out-file")
    resolved, kind, _, _ = check_model_checkpoint(checkpoint)
    model = load_model(resolved, device=torch_device, ema=ema, allow_import=allow_import)
    low_precision = bf16 and torch_device.type == "cuda"  # bf16 autocast is for GPUs
    result: SamplingResult = generate(
        model.denoiser,
        n,
        model.shape,
        seed,
        steps=steps,
        method=method,
        device=torch_device,
        batch_size=batch_size,
        precision=Precision(bf16=low_precision, fp32_steps=fp32_steps),
        progress=progress,
    )
    fields = to_physical(model, result.samples, snap=snap)
    if not torch.isfinite(fields).all():
        raise PirfError("the sampler produced NaN or inf values; the checkpoint may be broken")
    attrs = {
        "source": "model",
        "checkpoint": str(model.path),
        "checkpoint_kind": kind,
        "sampler": method,
        "steps": steps,
        "nfe_per_sample": result.nfe_per_sample,
        "seconds_per_sample": result.seconds_per_sample,
        "snapped": snap,
        "bf16": low_precision,
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
