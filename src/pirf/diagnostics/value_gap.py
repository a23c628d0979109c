"""``pirf diagnose value-gap``: the value gap of a checkpoint on its reference data.

The reward is the fine-tuning reward's plain form, minus the residual MSE in physical
units (:func:`pirf.finetune.reward.residual_loss`, float64): ``r(D(x_sigma))`` is then the
residual of the one-step denoised estimate, and the reached rewards are the residuals of
the samples the sampler makes from ``x_sigma``. :func:`diagnose_value_gap` measures them
(:func:`pirf.diagnostics.gap.measure_value_gap`) for the first ``n`` reference fields and
writes ``value-gap.json`` and ``value-gap.png`` into the output directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pirf.atomic import atomic_output
from pirf.devices import resolve_device
from pirf.diagnostics.figures import save_value_gap_figure
from pirf.diagnostics.gap import ProgressFn, check_request, measure_value_gap
from pirf.errors import PirfError, option
from pirf.evaluation.figures import DEFAULT_FIGURE_FORMAT, check_figure_format
from pirf.finetune.reward import residual_loss
from pirf.models.loaded import load_model
from pirf.models.reference import check_with_reference
from pirf.sampling import default_batch_size

DEFAULT_SIGMAS: tuple[float, ...] = (20.0, 5.0, 1.0, 0.2, 0.05, 0.01)
"""Noise levels of the diagnostic unless given: from nearly pure noise to nearly clean."""
JSON_FILE = "value-gap.json"
FIGURE_FILE = "value-gap.png"
"""The figure's file name (its suffix follows ``figure_format``)."""


def _output_directory(out: str | Path) -> Path:
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise PirfError(f"{option('out')} {directory} is a file; give a directory")
    return directory


def diagnose_value_gap(
    checkpoint: str | Path,
    reference: str | Path,
    out: str | Path,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    n: int = 16,
    runs: int = 4,
    steps: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
    allow_import: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Measure the value gap of ``checkpoint`` (a checkpoint or a run directory,
    :func:`pirf.models.resolve_checkpoint`) on the first ``n`` fields of ``reference`` and
    write the report and the figure into the directory ``out``; returns the report.

    ``steps`` Heun steps make the trajectories the trajectory states lie on and each
    continuation to 0; ``runs`` stochastic continuations per state estimate its value.
    ``figure_format``: png, pdf or svg; ``allow_import``: see
    :func:`pirf.models.load_model`. Everything is checked before any model is loaded.
    """
    levels = check_request(sigmas, steps=steps, runs=runs)
    check_figure_format(figure_format)
    directory = _output_directory(out)
    data = check_with_reference(checkpoint, reference, n=n)
    torch_device = resolve_device(device)
    model = load_model(checkpoint, device=torch_device, allow_import=allow_import)
    pde, normalisation = model.pde, model.normalisation
    clean = normalisation.to_model(data[:n].to(torch.float64)).to(torch.float32)

    def reward(x: torch.Tensor) -> torch.Tensor:
        return -residual_loss(pde, normalisation, x, dtype=torch.float64)

    size = batch_size or default_batch_size(model.shape, torch_device)
    started = time.perf_counter()
    measured = measure_value_gap(
        model.denoiser,
        reward,
        clean,
        levels,
        steps=steps,
        runs=runs,
        seed=seed,
        batch_size=size,
        device=torch_device,
        progress=progress,
    )
    report: dict[str, Any] = {
        "pde": pde.name,
        "checkpoint": str(model.path),
        "checkpoint_kind": model.kind,
        "checkpoint_sha256": model.sha256,
        "reference": str(reference),
        "reward": "minus the residual MSE in physical units (float64)",
        "sigmas": levels,
        "n": n,
        "runs": runs,
        "steps": steps,
        "seed": seed,
        "seconds": time.perf_counter() - started,
        **measured,
    }
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_output(directory / JSON_FILE, force=True) as temporary:
        temporary.write_text(json.dumps(report, indent=1))
    figure = save_value_gap_figure(
        directory / FIGURE_FILE,
        report["rows"],
        title=f"{pde.name}: {model.path}",
        figure_format=figure_format,
    )
    report["files"] = [str(directory / JSON_FILE), str(figure)]
    return report


__all__ = ["DEFAULT_SIGMAS", "FIGURE_FILE", "JSON_FILE", "diagnose_value_gap"]
