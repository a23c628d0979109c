"""Data-fidelity metrics of generated fields against held-out reference data.

All of them work on normalised fields (model space, per-channel standard deviation 0.5),
so that every channel weighs the same whatever its physical units.

Features (each a vector per sample):

* ``fields``: the normalised field itself, ``C H W`` values (minus the reference mean,
  which changes no distance). Sees the large scales, where most of the variance is: mean
  structure, amplitude, collapse onto a few modes.
* ``spectral``: per-scale statistics (:mod:`pirf.evaluation.spectra`): log10 power of every
  channel in every dyadic wavenumber band, and the coherence of every channel pair per
  band; standardised by the reference's per-feature standard deviation (at least
  :data:`SPECTRAL_RESOLUTION`). Raw fields hide fine scales: a smooth field's finest band
  holds a millionth of its variance, so blurring it or adding faint noise leaves pixel
  distances unchanged (an energy distance on pooled fields could not tell a good model
  from data). On a log scale, per band, the same changes move the features by many
  reference standard deviations; coherences catch channels that do not belong together.
* ``joint``: both at once, each block's squared distance divided by its reference scale
  (below), averaged over blocks. This is the headline distance.

Distances (:mod:`pirf.evaluation.distances`): biased ``MMD^2`` with a fixed kernel, and
the energy distance. The kernel's unit ``scale`` is the reference set's mean squared
pairwise distance in each block (about ``D / 2`` for normalised fields, ``2 D`` for
standardised statistics): computed from the reference alone, so every model evaluated
against one reference set is measured with the same kernel.

Floors: biased two-sample distances are positive even between two draws of one
distribution, and their size depends on the set sizes. So every comparison is made at one
size ``k``: each of ``repeats`` seeded splits draws two disjoint subsets ``A`` and ``B`` of
``k`` reference samples (and ``k`` of the samples if there are more); the model's value is
``metric(samples, A)`` and the floor ``metric(B, A)``, both averaged over splits. A model at
the floor is as close to the data as the data is to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pirf.errors import PirfError
from pirf.evaluation.distances import (
    energy_from_sq_distances,
    gaussian_kernel,
    mean_off_diagonal,
    mmd_from_kernels,
    pairwise_sq_distances,
)
from pirf.evaluation.spectra import Spectra, log_spectrum_error, spectra
from pirf.seeding import unit_generators

SPECTRAL_RESOLUTION = 0.01
"""Smallest standard deviation used to standardise a per-scale statistic (decades of power,
or coherence): changes below it are treated as immaterial, so a nearly constant statistic
cannot dominate the distance."""
SPLIT_STREAM = 100
"""Seed stream of the evaluation's random splits (disjoint from the data splits' streams)."""
BLOCKS = ("fields", "spectral")
"""Feature blocks; ``joint`` combines them."""


@dataclass(frozen=True)
class SetFeatures:
    """What the fidelity metrics need from one set of ``N`` samples."""

    flat: torch.Tensor
    """Normalised fields minus the reference mean, ``(N, C H W)`` (float32)."""
    spectral: torch.Tensor
    """Standardised per-scale statistics ``(N, F)`` (float64)."""
    radial: torch.Tensor
    """Radially averaged power spectra ``(N, C, K + 1)`` (float64)."""
    statistics: dict[str, torch.Tensor]
    """PDE-specific per-sample statistics ``name -> (N,)``."""

    @property
    def count(self) -> int:
        return self.flat.shape[0]


@dataclass(frozen=True)
class Split:
    """Index tensors of one split: ``samples`` (into the samples), ``a`` and ``b`` (disjoint,
    into the reference), each of one size ``k``."""

    samples: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor


def make_splits(
    n_samples: int, n_reference: int, subset: int, repeats: int, seed: int
) -> list[Split]:
    """``repeats`` seeded splits with subsets of size ``subset``; deterministic in ``seed``.

    The reference permutation is drawn first, so the reference subsets do not depend on
    ``n_samples``: the floors of :func:`~pirf.evaluation.metrics.evaluate_fields` and
    :func:`~pirf.evaluation.metrics.ground_truth_floor` coincide.
    """
    if subset < 2 or 2 * subset > n_reference or subset > n_samples:
        raise PirfError(
            f"cannot draw subsets of {subset} from {n_samples} samples and two disjoint ones "
            f"from {n_reference} reference samples; need at least 2 samples and 4 reference "
            "samples"
        )
    if repeats < 1:
        raise PirfError(f"repeats must be at least 1, got {repeats}")
    splits = []
    for generator in unit_generators(seed, SPLIT_STREAM, range(repeats)):
        order = torch.randperm(n_reference, generator=generator)
        if n_samples > subset:
            samples = torch.randperm(n_samples, generator=generator)[:subset]
        else:
            samples = torch.arange(n_samples)
        splits.append(Split(samples, order[:subset], order[subset : 2 * subset]))
    return splits


class FidelityReference:
    """Reference data prepared once: features, their standardisation, and the pairwise
    distances between reference samples that every comparison and floor reuses."""

    def __init__(
        self,
        normalised: torch.Tensor,
        periodic: tuple[bool, bool],
        statistics: dict[str, torch.Tensor] | None = None,
        *,
        batch_size: int = 256,
    ) -> None:
        if normalised.ndim != 4:
            raise PirfError(f"expected fields (N, C, H, W), got shape {tuple(normalised.shape)}")
        self.periodic = periodic
        self.batch_size = batch_size
        self.shape = tuple(normalised.shape[1:])
        self.centre = torch.zeros(self.shape, dtype=torch.float64, device=normalised.device)
        for start in range(0, normalised.shape[0], batch_size):
            self.centre += normalised[start : start + batch_size].to(torch.float64).sum(dim=0)
        self.centre /= normalised.shape[0]
        reference_spectra = spectra(normalised, periodic, batch_size=batch_size)
        raw = reference_spectra.features()
        self.spectral_mean = raw.mean(dim=0)
        self.spectral_std = raw.std(dim=0).clamp_min(SPECTRAL_RESOLUTION)
        self.features = self._assemble(normalised, reference_spectra, statistics or {})
        self.distances = self.block_distances(self.features)
        self.scales: dict[str, float] = {}
        for block in BLOCKS:
            scale = mean_off_diagonal(self.distances[block])
            if not scale > 0:
                raise PirfError(
                    f"the reference samples are all identical in their '{block}' features; "
                    "fidelity needs a varied reference set"
                )
            self.scales[block] = scale

    def _assemble(
        self, normalised: torch.Tensor, set_spectra: Spectra, statistics: dict[str, torch.Tensor]
    ) -> SetFeatures:
        flat = torch.empty(
            (normalised.shape[0], self.centre.numel()),
            dtype=torch.float32,
            device=normalised.device,
        )
        for start in range(0, normalised.shape[0], self.batch_size):
            chunk = normalised[start : start + self.batch_size].to(torch.float64) - self.centre
            flat[start : start + self.batch_size] = chunk.flatten(1).to(torch.float32)
        spectral = (set_spectra.features() - self.spectral_mean) / self.spectral_std
        stats = {
            name: values.detach().to(torch.float64).cpu() for name, values in statistics.items()
        }
        return SetFeatures(flat, spectral, set_spectra.radial, stats)

    def features_of(
        self, normalised: torch.Tensor, statistics: dict[str, torch.Tensor] | None = None
    ) -> SetFeatures:
        """Features of another set (e.g. model samples) in this reference's coordinates."""
        if tuple(normalised.shape[1:]) != self.shape:
            raise PirfError(
                f"samples have shape {tuple(normalised.shape[1:])} per sample but the reference "
                f"has {self.shape}"
            )
        set_spectra = spectra(normalised, self.periodic, batch_size=self.batch_size)
        return self._assemble(normalised, set_spectra, statistics or {})

    def block_distances(
        self, x: SetFeatures, y: SetFeatures | None = None
    ) -> dict[str, torch.Tensor]:
        """Pairwise squared distances per block between ``x`` and ``y`` (``x`` if ``None``)."""
        return {
            "fields": pairwise_sq_distances(
                x.flat, None if y is None else y.flat, batch_size=self.batch_size
            ),
            "spectral": pairwise_sq_distances(
                x.spectral, None if y is None else y.spectral, batch_size=self.batch_size
            ),
        }

    def joint(self, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The joint squared distance: per-block distances over their scales, averaged."""
        return sum(blocks[b] / self.scales[b] for b in BLOCKS) / len(BLOCKS)


def _sub(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return matrix.index_select(0, rows.to(matrix.device)).index_select(1, cols.to(matrix.device))


def compare(
    reference: FidelityReference,
    x: SetFeatures,
    x_distances: dict[str, torch.Tensor],
    xa_distances: dict[str, torch.Tensor],
    x_index: torch.Tensor,
    a_index: torch.Tensor,
) -> dict[str, float]:
    """Every fidelity metric of the subset ``x_index`` of set ``x`` against the reference
    subset ``a_index``, as a flat ``{"path/of/metric": value}``.

    ``x_distances`` are the pairwise block distances within ``x``, ``xa_distances`` those
    from ``x`` to the whole reference.
    """
    a_distances = {b: _sub(reference.distances[b], a_index, a_index) for b in BLOCKS}
    xx = {b: _sub(x_distances[b], x_index, x_index) for b in BLOCKS}
    xa = {b: _sub(xa_distances[b], x_index, a_index) for b in BLOCKS}
    scaled = {b: tuple(m[b] / reference.scales[b] for m in (xx, a_distances, xa)) for b in BLOCKS}
    scaled["joint"] = tuple(reference.joint(m) for m in (xx, a_distances, xa))
    out: dict[str, float] = {}
    for block, (d_xx, d_aa, d_xa) in scaled.items():
        kernels = [gaussian_kernel(d, 1.0) for d in (d_xx, d_aa, d_xa)]
        out[f"distance/{block}/mmd"] = mmd_from_kernels(*kernels)
        out[f"distance/{block}/energy"] = energy_from_sq_distances(d_xx, d_aa, d_xa)

    x_power = x.radial.index_select(0, x_index.to(x.radial.device)).mean(dim=0)
    a_power = reference.features.radial.index_select(
        0, a_index.to(reference.features.radial.device)
    ).mean(dim=0)
    errors = log_spectrum_error(x_power, a_power)
    for channel, error in enumerate(errors.tolist()):
        out[f"spectrum/{channel}"] = error
    out["spectrum/mean"] = float(errors.mean())

    x_spread = mean_off_diagonal(xx["fields"].sqrt())
    a_spread = mean_off_diagonal(a_distances["fields"].sqrt())
    out["diversity/ratio"] = x_spread / a_spread if a_spread > 0 else float("nan")

    for name, values in x.statistics.items():
        x_mean = values.index_select(0, x_index.cpu()).mean()
        a_mean = reference.features.statistics[name].index_select(0, a_index.cpu()).mean()
        out[f"statistics/{name}"] = float((x_mean - a_mean).abs())
    return out


def mean_and_std(rows: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation over splits of each flat metric (std 0 for one split)."""
    means, stds = {}, {}
    for key in rows[0]:
        values = torch.tensor([row[key] for row in rows], dtype=torch.float64)
        means[key] = float(values.mean())
        stds[key] = float(values.std()) if len(rows) > 1 else 0.0
    return means, stds
