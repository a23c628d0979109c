"""The evaluation protocol on tensors: every metric of a set of samples, beside its floor.

:func:`evaluate_fields` measures generated samples against held-out reference data;
:func:`ground_truth_floor` measures held-out ground truth the same way, so a report shows
what "as good as the data" looks like beside every model's numbers. Both return nested
dicts of plain Python numbers, lists and strings (JSON-ready; a value that is not finite
becomes ``None``)::

    {"pde", "channels",
     "counts":   {"samples", "reference", "subset", "repeats", "seed"},
     "physics":  {"residual": {"mse": {mean, median, p90, max, count, nonfinite},
                               "mae": {...}, "points", "snapped"},
                  "consistency": {mean, median, p90, max, count, nonfinite, snapped} | None,
                  "reference_residual": {..., "definition": "reference"}  (on request)},
     "fidelity": {"distance":   {"joint" | "fields" | "spectral":
                                   {"mmd" | "energy": {value, floor, floor_std, ratio}}},
                  "spectrum":   {"log10_error": {<channel> | "mean": {value, floor, floor_std}},
                                 "wavenumbers": [...],
                                 "mean_power": {"samples": {<channel>: [...]},
                                                "reference": {<channel>: [...]}}},
                  "diversity":  {"ratio": {value, floor, floor_std},
                                 "mean_distance": {"samples", "reference"}},
                  "statistics": {<name>: {"samples", "reference",
                                          "abs_error": {value, floor, floor_std}}}}}

Physics is measured in physical units after ``pde.snap`` (:mod:`pirf.evaluation.physics`);
fidelity on normalised fields, as generated (:mod:`pirf.evaluation.fidelity`), over
``repeats`` seeded splits at one subset size ``k`` (default ``min(N, M // 2)``): the value
compares ``k`` samples with a reference subset ``A``, the floor a disjoint reference subset
``B`` with the same ``A``. Everything is deterministic given ``seed``.

The reference side (features, the reference-reference distances) costs as much as the
rest; :func:`prepare_reference` computes it once for several calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pirf.errors import PirfError
from pirf.evaluation.distances import mean_off_diagonal
from pirf.evaluation.fidelity import (
    FidelityReference,
    SetFeatures,
    Split,
    compare,
    make_splits,
    mean_and_std,
)
from pirf.evaluation.physics import consistency_summary, residual_summary
from pirf.evaluation.statistics import statistics_for
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation

DEFAULT_REPEATS = 5
"""Seeded splits averaged by default: cheap (they reuse one set of pairwise distances) and
enough to make a floor's split-to-split spread visible."""


def _checked(pde: PDE, fields: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.is_tensor(fields):
        raise PirfError(f"{what} must be a tensor (N, C, H, W)")
    pde.check_fields(fields)
    if not fields.is_floating_point():
        raise PirfError(f"{what} must be floating point, got {fields.dtype}")
    return fields.detach()


def _model_space(fields: torch.Tensor, normalisation: Normalisation) -> torch.Tensor:
    """Normalised fields in float32 at least (float64 stays float64)."""
    if fields.dtype != torch.float64:
        fields = fields.to(torch.float32)
    return normalisation.to_model(fields)


def _statistics(
    pde: PDE, fields: torch.Tensor, snap: bool, batch_size: int
) -> dict[str, torch.Tensor]:
    """Every registered PDE statistic of ``fields`` (snapped if asked), per sample."""
    registered = statistics_for(pde)
    values: dict[str, list[torch.Tensor]] = {name: [] for name in registered}
    with torch.no_grad():
        for start in range(0, fields.shape[0], batch_size):
            chunk = fields[start : start + batch_size].to(torch.float64)
            chunk = pde.snap(chunk) if snap else chunk
            for name, statistic in registered.items():
                values[name].append(statistic(pde, chunk).detach().to(torch.float64).cpu())
    return {name: torch.cat(parts) for name, parts in values.items()}


def _pair(means: dict, floor_means: dict, floor_stds: dict, key: str) -> dict[str, float]:
    return {"value": means[key], "floor": floor_means[key], "floor_std": floor_stds[key]}


def _fidelity_report(
    pde: PDE,
    reference: FidelityReference,
    samples: SetFeatures | None,
    means: dict[str, float],
    floor_means: dict[str, float],
    floor_stds: dict[str, float],
    samples_spread: float | None = None,
) -> dict[str, Any]:
    """The nested fidelity section from the split-averaged flat metrics."""
    distance: dict[str, Any] = {}
    for block in ("joint", "fields", "spectral"):
        distance[block] = {}
        for statistic in ("mmd", "energy"):
            entry = _pair(means, floor_means, floor_stds, f"distance/{block}/{statistic}")
            entry["ratio"] = entry["value"] / entry["floor"] if entry["floor"] > 0 else None
            distance[block][statistic] = entry

    channels = list(pde.channels)
    log10_error = {
        name: _pair(means, floor_means, floor_stds, f"spectrum/{index}")
        for index, name in enumerate(channels)
    }
    log10_error["mean"] = _pair(means, floor_means, floor_stds, "spectrum/mean")
    mean_power = {"reference": _per_channel(channels, reference.features.radial.mean(dim=0))}
    if samples is not None:
        mean_power = {"samples": _per_channel(channels, samples.radial.mean(dim=0)), **mean_power}

    spread = {"reference": mean_off_diagonal(reference.distances["fields"].sqrt())}
    if samples_spread is not None:
        spread = {"samples": samples_spread, **spread}

    statistics = {}
    for name, values in reference.features.statistics.items():
        own = samples.statistics[name] if samples is not None else values
        statistics[name] = {
            "samples": float(own.mean()),
            "reference": float(values.mean()),
            "abs_error": _pair(means, floor_means, floor_stds, f"statistics/{name}"),
        }
    return {
        "distance": distance,
        "spectrum": {
            "log10_error": log10_error,
            "wavenumbers": list(range(reference.features.radial.shape[-1])),
            "mean_power": mean_power,
        },
        "diversity": {
            "ratio": _pair(means, floor_means, floor_stds, "diversity/ratio"),
            "mean_distance": spread,
        },
        "statistics": statistics,
    }


def _per_channel(channels: list[str], values: torch.Tensor) -> dict[str, list[float]]:
    return {name: values[index].tolist() for index, name in enumerate(channels)}


def _json_ready(value: Any) -> Any:
    """Non-finite floats become ``None``, recursively."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class PreparedReference:
    """Held-out reference data with its fidelity features and pairwise distances computed.

    Preparing costs as much as the rest of an evaluation together (the reference-reference
    distances are the largest matrix); prepare once with :func:`prepare_reference` and pass
    the result to :func:`evaluate_fields` and :func:`ground_truth_floor` as the reference
    to score several models and the floor against the same data.
    """

    pde_name: str
    fields: torch.Tensor
    """The reference fields, physical units, on the evaluation device."""
    fidelity: FidelityReference
    normalisation: Normalisation
    snap: bool
    snap_fidelity: bool
    batch_size: int


def prepare_reference(
    pde: PDE,
    reference_physical: torch.Tensor,
    normalisation: Normalisation,
    *,
    snap: bool = True,
    snap_fidelity: bool = False,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> PreparedReference:
    """Prepare ``reference_physical (M, C, H, W)`` for evaluation (see
    :class:`PreparedReference`); the options mean what they mean in :func:`evaluate_fields`."""
    reference = _checked(pde, reference_physical, "reference fields")
    if device is not None:
        reference = reference.to(device)
    statistics = _statistics(pde, reference, snap, batch_size)
    fidelity_fields = pde.snap(reference.to(torch.float64)) if snap_fidelity else reference
    fidelity = FidelityReference(
        _model_space(fidelity_fields, normalisation),
        tuple(pde.grid.periodic),
        statistics,
        batch_size=batch_size,
    )
    return PreparedReference(
        pde.name, reference, fidelity, normalisation, snap, snap_fidelity, batch_size
    )


def _reference(
    pde: PDE,
    reference: torch.Tensor | PreparedReference,
    normalisation: Normalisation,
    snap: bool,
    snap_fidelity: bool,
    batch_size: int,
    device: torch.device | str | None,
) -> PreparedReference:
    """``reference`` prepared, or checked to have been prepared with the same options."""
    if not isinstance(reference, PreparedReference):
        return prepare_reference(
            pde,
            reference,
            normalisation,
            snap=snap,
            snap_fidelity=snap_fidelity,
            batch_size=batch_size,
            device=device,
        )
    requested = (pde.name, normalisation, snap, snap_fidelity)
    prepared = (
        reference.pde_name,
        reference.normalisation,
        reference.snap,
        reference.snap_fidelity,
    )
    if requested != prepared:
        raise PirfError(
            "the prepared reference was made for another PDE, normalisation or snapping "
            "option; prepare it again with the evaluation's settings"
        )
    return reference


def _subset_size(n_samples: int, n_reference: int, subset: int | None) -> int:
    size = min(n_samples, n_reference // 2) if subset is None else subset
    if size < 2:
        raise PirfError(
            f"fidelity needs at least 2 samples and 4 reference samples; got {n_samples} "
            f"samples and {n_reference} reference samples"
        )
    return size


def evaluate_fields(
    pde: PDE,
    samples_physical: torch.Tensor,
    reference_physical: torch.Tensor | PreparedReference,
    normalisation: Normalisation,
    *,
    snap: bool = True,
    snap_fidelity: bool = False,
    consistency: bool = True,
    reference_residual: bool = False,
    subset: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """All metrics of generated ``samples_physical (N, C, H, W)`` against held-out
    ``reference_physical (M, C, H, W)`` (physical units, or a :class:`PreparedReference`),
    with fidelity floors.

    ``snap`` projects samples with ``pde.snap`` before the physics metrics and the PDE
    statistics; ``snap_fidelity`` also before the fidelity metrics (off: fidelity judges the
    samples as generated). ``consistency=False`` skips the solver re-solve (the slowest
    metric). ``reference_residual`` adds ``physics.reference_residual``, the residual as the
    paper's code defines it (``PDE.reference_residual``). ``subset`` (default
    ``min(N, M // 2)``), ``repeats`` and ``seed`` define the splits; ``batch_size`` bounds
    memory; ``device`` (default: the samples', or the prepared reference's) is where the
    work runs. See the module docstring for the returned layout.
    """
    samples = _checked(pde, samples_physical, "samples")
    if isinstance(reference_physical, PreparedReference):
        device = reference_physical.fields.device
        reference_shape = reference_physical.fields.shape
    else:
        reference_shape = _checked(pde, reference_physical, "reference fields").shape
        device = samples.device if device is None else device
    if samples.shape[1:] != reference_shape[1:]:
        raise PirfError(
            f"samples {tuple(samples.shape[1:])} and reference {tuple(reference_shape[1:])} "
            "fields differ in shape"
        )
    size = _subset_size(samples.shape[0], reference_shape[0], subset)
    splits = make_splits(samples.shape[0], reference_shape[0], size, repeats, seed)
    reference = _reference(
        pde, reference_physical, normalisation, snap, snap_fidelity, batch_size, device
    )
    samples = samples.to(device)
    prepared = reference.fidelity

    physics = _physics(pde, samples, snap, consistency, reference_residual, batch_size)
    fidelity_fields = pde.snap(samples.to(torch.float64)) if snap_fidelity else samples
    features = prepared.features_of(
        _model_space(fidelity_fields, normalisation),
        _statistics(pde, samples, snap, batch_size),
    )
    within = prepared.block_distances(features)
    across = prepared.block_distances(features, prepared.features)
    rows = [compare(prepared, features, within, across, s.samples, s.a) for s in splits]
    means, _ = mean_and_std(rows)
    floor_means, floor_stds = mean_and_std(_floor_rows(prepared, splits))
    fidelity = _fidelity_report(
        pde,
        prepared,
        features,
        means,
        floor_means,
        floor_stds,
        samples_spread=mean_off_diagonal(within["fields"].sqrt()),
    )
    counts = _counts(samples.shape[0], reference_shape[0], size, repeats, seed)
    return _report(pde, counts, physics, fidelity)


def ground_truth_floor(
    pde: PDE,
    reference_physical: torch.Tensor | PreparedReference,
    normalisation: Normalisation,
    *,
    n_samples: int | None = None,
    snap: bool = True,
    snap_fidelity: bool = False,
    consistency: bool = True,
    reference_residual: bool = False,
    subset: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """The metrics of held-out ground truth, in the layout of :func:`evaluate_fields`.

    Physics: the residual (and solver consistency) of every reference sample, the level a
    perfect model would reach. Fidelity: one reference half against the other, i.e. the
    floors, with ``value == floor``. Pass the model's sample count as ``n_samples`` (or the
    same ``subset``) and the same ``repeats`` and ``seed``, and the numbers are exactly the
    floors that :func:`evaluate_fields` reports beside that model.
    """
    reference = _reference(
        pde, reference_physical, normalisation, snap, snap_fidelity, batch_size, device
    )
    n_reference = reference.fields.shape[0]
    size = _subset_size(n_reference // 2 if n_samples is None else n_samples, n_reference, subset)
    splits = make_splits(size, n_reference, size, repeats, seed)
    physics = _physics(pde, reference.fields, snap, consistency, reference_residual, batch_size)
    floor_means, floor_stds = mean_and_std(_floor_rows(reference.fidelity, splits))
    fidelity = _fidelity_report(pde, reference.fidelity, None, floor_means, floor_means, floor_stds)
    counts = _counts(n_reference, n_reference, size, repeats, seed)
    return _report(pde, counts, physics, fidelity)


def _physics(
    pde: PDE,
    fields: torch.Tensor,
    snap: bool,
    consistency: bool,
    reference_residual: bool,
    batch_size: int,
) -> dict[str, Any]:
    physics = {
        "residual": residual_summary(pde, fields, snap=snap, batch_size=batch_size),
        "consistency": (
            consistency_summary(pde, fields, snap=snap, batch_size=batch_size)
            if consistency
            else None
        ),
    }
    if reference_residual:
        physics["reference_residual"] = residual_summary(
            pde, fields, snap=snap, batch_size=batch_size, definition="reference"
        )
    return physics


def _floor_rows(reference: FidelityReference, splits: list[Split]) -> list[dict[str, float]]:
    """The metrics of each split's reference subset ``B`` against its subset ``A``."""
    return [
        compare(reference, reference.features, reference.distances, reference.distances, s.b, s.a)
        for s in splits
    ]


def _counts(samples: int, reference: int, subset: int, repeats: int, seed: int) -> dict[str, int]:
    return {
        "samples": samples,
        "reference": reference,
        "subset": subset,
        "repeats": repeats,
        "seed": seed,
    }


def _report(
    pde: PDE, counts: dict[str, int], physics: dict[str, Any], fidelity: dict[str, Any]
) -> dict[str, Any]:
    report = {
        "pde": pde.name,
        "channels": list(pde.channels),
        "counts": counts,
        "physics": physics,
        "fidelity": fidelity,
    }
    return _json_ready(report)
