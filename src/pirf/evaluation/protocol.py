"""The evaluation protocol on files: samples (or a checkpoint) against held-out data.

Every report has the ground-truth row (the held-out data's own residual and the fidelity
floors) beside each model row, as the project's evaluation specification asks. Fidelity
is measured on fields normalised with the *reference* file's normalisation, so every
method is judged in the same space. ``report.json`` keeps every number; :func:`headline`
extracts the columns of the readable table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import pirf
import pirf.data
from pirf.checks import (
    check_count,
    check_dataset,
    check_device,
    check_model_checkpoint,
    check_output_dir,
    check_same_problem,
)
from pirf.errors import PirfError, option
from pirf.evaluation.figures import (
    DEFAULT_FIGURE_FORMAT,
    REFERENCE_SAMPLES_LABEL,
    check_figure_format,
    colour_scales,
    save_residual_histogram,
    save_sample_grid,
    save_spectra,
)
from pirf.evaluation.metrics import evaluate_fields, ground_truth_floor, prepare_reference
from pirf.evaluation.report import source_label
from pirf.evaluation.results import headline
from pirf.pdes.residuals import residual_function, residual_per_sample

FIGURE_SAMPLES = 4
"""Samples per grid figure."""


def _slug(label: str) -> str:
    """A file-name form of a row label: runs of other characters become one ``-``."""
    return re.sub(r"[^0-9A-Za-z_]+", "-", label).strip("-") or "row"


def write_figures(
    directory: Path,
    pde: pirf.pdes.PDE,
    reference_fields: torch.Tensor,
    row_fields: list[torch.Tensor],
    report: dict[str, Any],
    *,
    per_sample: Sequence[torch.Tensor] = (),
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> list[str]:
    """Sample grids with residual maps (held-out data and every row, on colour scales
    shared by all of them), the histogram of per-sample residual MSE (``per_sample``: one
    tensor per row; the held-out data's own as the floor) and the mean spectra, in
    ``figure_format``. Returns the paths written."""
    directory = Path(directory)
    labelled = [(REFERENCE_SAMPLES_LABEL, reference_fields)] + [
        (row["label"], fields) for row, fields in zip(report["rows"], row_fields, strict=True)
    ]
    with torch.no_grad():
        shown = [pde.snap(fields[:FIGURE_SAMPLES].to(torch.float64)) for _, fields in labelled]
        residuals = [pde.residual(fields) for fields in shown]
    scales = colour_scales(shown, residuals)
    written = []
    for (label, _), fields, residual in zip(labelled, shown, residuals, strict=True):
        name = "reference" if label == REFERENCE_SAMPLES_LABEL else _slug(label)
        path = save_sample_grid(
            directory / f"{name}-samples",
            fields,
            residual,
            channels=tuple(pde.channels),
            title=f"{pde.name}: {label} (colour scales shared by every model's figure)",
            scales=scales,
            figure_format=figure_format,
        )
        written.append(str(path))
    if per_sample:
        floor, _, _ = residual_per_sample(pde, reference_fields)
        path = save_residual_histogram(
            directory / "residuals",
            {row["label"]: values for row, values in zip(report["rows"], per_sample, strict=True)},
            reference=floor,
            title=f"{pde.name}: residual MSE of each sample",
            figure_format=figure_format,
        )
        written.append(str(path))
    spectrum = report["rows"][0]["metrics"]["fidelity"]["spectrum"]
    curves = {"held-out data": spectrum["mean_power"]["reference"]}
    for row in report["rows"]:
        curves[row["label"]] = row["metrics"]["fidelity"]["spectrum"]["mean_power"]["samples"]
    path = save_spectra(
        directory / "spectra",
        spectrum["wavenumbers"],
        curves,
        title=f"{pde.name}: mean power spectra",
        figure_format=figure_format,
    )
    written.append(str(path))
    return written


def _load_reference(reference: str | Path) -> tuple[pirf.data.PDEDataset, torch.Tensor]:
    data = pirf.data.load(reference)
    return data, data.fields().to(torch.float64)


def _check_same_problem(samples: pirf.data.PDEDataset, reference: pirf.data.PDEDataset) -> None:
    if samples.pde.name != reference.pde.name or samples.channels != reference.channels:
        raise PirfError(
            f"samples are '{samples.pde.name}' {list(samples.channels)}, reference is "
            f"'{reference.pde.name}' {list(reference.channels)}: evaluate against data of the "
            "same PDE"
        )
    if samples.shape[1:] != reference.shape[1:]:
        raise PirfError(
            f"samples have shape {samples.shape[1:]}, reference {reference.shape[1:]}; "
            "use a reference of the same resolution"
        )


def evaluate_files(
    samples: str | Path | Sequence[str | Path],
    reference: str | Path,
    *,
    consistency: bool = True,
    reference_residual: bool = False,
    seed: int = 0,
    figures: str | Path | None = None,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> dict[str, Any]:
    """Evaluate one or several samples files against the held-out ``reference`` file;
    with ``figures``, also draw sample grids, the residual histogram and spectra into that
    directory (as ``figure_format``: png, pdf or svg);
    ``reference_residual`` adds the residual as the paper's code defines it, beside pirf's
    own, with its own ground-truth floor. Every file is read and checked before anything
    is computed."""
    paths = [samples] if isinstance(samples, (str, Path)) else list(samples)
    if not paths:
        raise PirfError(f"give at least one samples file ({option('samples')})")
    check_count("seed", seed, minimum=0)
    check_figure_format(figure_format)
    if figures is not None:
        check_output_dir(figures, "figures")
    reference_header = check_dataset(reference, "reference", minimum=4, scan=0)
    if reference_residual:
        residual_function(reference_header.pde, "reference")
    for path in paths:
        check_dataset(path, "samples", minimum=2, scan=0)
    reference_data, reference_fields = _load_reference(reference)
    pde, normalisation = reference_data.pde, reference_data.normalisation
    loaded = []
    for path in paths:
        data = pirf.data.load(path)
        _check_same_problem(data, reference_data)
        loaded.append((path, data, data.fields().to(torch.float64)))
    prepared = prepare_reference(pde, reference_fields, normalisation)
    rows, row_fields, per_sample = [], [], []
    for path, data, fields in loaded:
        row_fields.append(fields[:FIGURE_SAMPLES])
        if figures is not None:
            per_sample.append(residual_per_sample(pde, fields)[0])
        metrics = evaluate_fields(
            pde,
            fields,
            prepared,
            normalisation,
            consistency=consistency,
            reference_residual=reference_residual,
            seed=seed,
        )
        attrs = data.attrs
        rows.append(
            {
                "label": source_label(path),
                "samples": str(path),
                "steps": attrs.get("steps"),
                "sampler": attrs.get("sampler"),
                "nfe": attrs.get("nfe_per_sample"),
                "seconds_per_sample": attrs.get("seconds_per_sample"),
                "metrics": metrics,
                "headline": headline(metrics).to_json(),
            }
        )
    floor = ground_truth_floor(
        pde,
        prepared,
        normalisation,
        n_samples=min(len(d) for _, d, _ in loaded),
        consistency=consistency,
        reference_residual=reference_residual,
        seed=seed,
    )
    report = _report(pde.name, reference, len(reference_data), floor, rows)
    if figures is not None:
        report["figures"] = write_figures(
            figures,
            pde,
            reference_fields,
            row_fields,
            report,
            per_sample=per_sample,
            figure_format=figure_format,
        )
    return report


def evaluate_checkpoint(
    checkpoint: str | Path,
    reference: str | Path,
    *,
    steps: Sequence[int] = (20, 40, 80),
    n: int = 256,
    seed: int = 0,
    method: str = "heun",
    device: torch.device | str = "cpu",
    consistency: bool = True,
    reference_residual: bool = False,
    batch_size: int | None = None,
    figures: str | Path | None = None,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
    allow_import: bool = False,
) -> dict[str, Any]:
    """Sample ``n`` fields from ``checkpoint`` (a checkpoint, or a run directory's best or
    final one: :func:`pirf.models.resolve_checkpoint`) at each step count and evaluate them;
    with ``figures``, also draw sample grids, the residual histogram and spectra into that
    directory (as ``figure_format``: png, pdf or svg).
    ``checkpoint`` may be a run directory: its ``best/`` if it has one, else its final
    ``checkpoint/`` (the report's ``checkpoint`` and ``checkpoint_kind`` say which).
    ``progress(label)`` gives the ``progress(done, total)`` function of each step count's
    sampling (the CLI's progress bar). ``reference_residual``: as in
    :func:`evaluate_files`. ``allow_import``: see :func:`pirf.models.load_model`. Every
    argument is checked before anything is computed."""
    from pirf.models.loaded import load_model
    from pirf.sampling.from_checkpoint import to_physical
    from pirf.sampling.generate import generate
    from pirf.sampling.samplers import step_function

    steps = list(steps)
    if not steps:
        raise PirfError(f"{option('steps')} needs at least one step count")
    for count in steps:
        check_count("steps", count)
    check_count("n", n, minimum=2)
    check_count("seed", seed, minimum=0)
    if batch_size is not None:
        check_count("batch_size", batch_size)
    step_function(method)
    device = check_device(device)
    check_figure_format(figure_format)
    if figures is not None:
        check_output_dir(figures, "figures")
    checkpoint, kind, info, checkpoint_pde = check_model_checkpoint(checkpoint)
    assert info.resolution is not None  # check_model_checkpoint refuses a checkpoint without
    reference_header = check_dataset(reference, "reference", minimum=4, scan=0)
    check_same_problem(
        reference_header, "reference", checkpoint_pde, info.resolution, f"{checkpoint}"
    )
    if reference_residual:
        residual_function(checkpoint_pde, "reference")
    model = load_model(checkpoint, device=device, allow_import=allow_import)
    reference_data, reference_fields = _load_reference(reference)
    pde, normalisation = reference_data.pde, reference_data.normalisation
    prepared = prepare_reference(pde, reference_fields, normalisation)
    rows, row_fields, per_sample = [], [], []
    for count in steps:
        result = generate(
            model.denoiser,
            n,
            model.shape,
            seed,
            steps=count,
            method=method,
            device=device,
            batch_size=batch_size,
            progress=None if progress is None else progress(f"sampling at {count} steps"),
        )
        fields = to_physical(model, result.samples, snap=False)
        row_fields.append(fields[:FIGURE_SAMPLES])
        if figures is not None:
            per_sample.append(residual_per_sample(pde, fields)[0])
        metrics = evaluate_fields(
            pde,
            fields,
            prepared,
            normalisation,
            consistency=consistency,
            reference_residual=reference_residual,
            seed=seed,
        )
        rows.append(
            {
                "label": f"{source_label(model.path)} @ {count} steps",
                "checkpoint": str(model.path),
                "steps": count,
                "sampler": method,
                "nfe": result.nfe_per_sample,
                "seconds_per_sample": result.seconds_per_sample,
                "metrics": metrics,
                "headline": headline(metrics).to_json(),
            }
        )
    floor = ground_truth_floor(
        pde,
        prepared,
        normalisation,
        n_samples=n,
        consistency=consistency,
        reference_residual=reference_residual,
        seed=seed,
    )
    report = _report(pde.name, reference, len(reference_data), floor, rows)
    report["checkpoint"], report["checkpoint_kind"] = str(checkpoint), kind
    if figures is not None:
        report["figures"] = write_figures(
            figures,
            pde,
            reference_fields,
            row_fields,
            report,
            per_sample=per_sample,
            figure_format=figure_format,
        )
    return report


def _report(
    pde: str, reference: str | Path, n_reference: int, floor: dict[str, Any], rows: list
) -> dict[str, Any]:
    return {
        "pde": pde,
        "reference": str(reference),
        "n_reference": n_reference,
        "pirf_version": pirf.__version__,
        "ground_truth": {"metrics": floor, "headline": headline(floor).to_json()},
        "rows": rows,
    }
