"""Figures of evaluation: samples beside their residual maps, residual histograms, spectra.

Every figure is meant to be set beside another in a paper, so

* the colour scales are shared: one range per channel over every row (model) and sample a
  figure shows, the held-out data's sample included, and one logarithmic scale for the
  ``|residual|`` maps of all of them, so a lower residual reads as a darker map
  (:func:`colour_scales`); one colour bar per column says what the colours mean;
* a held-out data sample is labelled as one (:data:`REFERENCE_LABEL`): generated samples
  are not paired with data samples, so nothing is called "ground truth" for them;
* every logarithmic axis labels its decades as ``10^k`` (:func:`log_axis`);
* figures are written as PNG, PDF or SVG (:data:`FIGURE_FORMATS`, :func:`save_figure`);
  the vector formats keep text and lines as vectors.

Drawn with matplotlib's Agg canvas (no display, no global pyplot state), so they work in
scripts, tests and worker processes alike. Each ``*_figure`` function builds a figure (which
tests inspect) and its ``save_*`` twin writes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pirf.errors import PirfError, option
from pirf.settings import FIGURE_FORMATS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colorbar import Colorbar
    from matplotlib.figure import Figure

DEFAULT_FIGURE_FORMAT = "png"
DPI = 110
"""Resolution of PNG figures (vector formats ignore it except for embedded images)."""

REFERENCE_LABEL = "reference sample (data)"
"""How a held-out data sample is labelled beside generated ones (never "ground truth":
a generated sample is not the solution of that data sample's problem)."""
REFERENCE_SAMPLES_LABEL = "reference samples (data)"
FLOOR_LABEL = "held-out data (floor)"
"""The held-out data's own residual in a histogram: the level of the discretisation."""

FIELD_PERCENTILES = (1.0, 99.0)
"""Robust range of a channel's colour scale: these percentiles of every value shown, so a
few extreme pixels of one model do not wash out the others."""
RESIDUAL_PERCENTILES = (1.0, 99.5)
"""Per shown stack, these percentiles of ``|R|``; the shared log scale spans the lowest
and the highest of them, so it covers every model's maps."""
RESIDUAL_TINY = 1e-30
"""``|R|`` below this (exact zeros) is drawn as this, the bottom of any log scale."""


# --------------------------------------------------------------------------- files
def check_figure_format(figure_format: str) -> str:
    """``figure_format`` if it is one of :data:`FIGURE_FORMATS`, else a one-line error
    (commands check it before any work)."""
    if figure_format not in FIGURE_FORMATS:
        raise PirfError(
            f"unknown {option('figure_format')} '{figure_format}'; "
            f"use one of {', '.join(FIGURE_FORMATS)}"
        )
    return figure_format


def figure_path(path: Path, figure_format: str = DEFAULT_FIGURE_FORMAT) -> Path:
    """``path`` with the suffix of ``figure_format`` (callers name figures without caring
    about the format)."""
    return Path(path).with_suffix("." + check_figure_format(figure_format))


def agg_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas, laid out by matplotlib's constrained layout.

    matplotlib is imported here, on first use, so that modules which may draw (and the
    command line that imports them) do not pay for it until a figure is made.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path, figure_format: str = DEFAULT_FIGURE_FORMAT) -> Path:
    """Write ``figure`` to ``path`` with the suffix of ``figure_format`` (its folder made);
    returns the path written. PDF and SVG are written by matplotlib's vector backends."""
    path = figure_path(path, figure_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Creator": "pirf"} if figure_format in ("pdf", "svg") else None
    figure.savefig(path, format=figure_format, dpi=DPI, metadata=metadata)
    return path


# --------------------------------------------------------------------------- log axes
def decade_ticks(axis: Any, *, most: int = 12) -> None:
    """Major ticks at the decades of a log ``axis`` (an x or y axis, or a colour bar's),
    labelled ``10^k`` (at most about ``most`` of them: every other decade on a wide
    range); minor ticks between them, unlabelled."""
    from matplotlib.ticker import LogFormatterMathtext, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10.0, numticks=most))
    axis.set_major_formatter(LogFormatterMathtext(base=10.0))
    axis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(2, 10) * 0.1, numticks=most))
    axis.set_minor_formatter(NullFormatter())


def log_axis(axes: Axes, which: str = "y") -> None:
    """Make the ``x``, ``y`` or both (``"xy"``) axes of ``axes`` logarithmic, with decade
    ticks labelled ``10^k`` (:func:`decade_ticks`), the same on every figure."""
    if "x" in which:
        axes.set_xscale("log")
        decade_ticks(axes.xaxis)
    if "y" in which:
        axes.set_yscale("log")
        decade_ticks(axes.yaxis)


# --------------------------------------------------------------------------- colour scales
@dataclass(frozen=True)
class ColourScales:
    """The colour ranges of one figure (or of several that are set side by side)."""

    fields: tuple[tuple[float, float], ...]
    """Per channel, ``(vmin, vmax)`` shared by every row."""
    residual: tuple[float, float]
    """``(vmin, vmax)`` of ``|R|`` on a log scale, shared by every residual map."""


def _finite(values: torch.Tensor) -> np.ndarray:
    array = values.detach().to(torch.float64).cpu().numpy().ravel()
    return array[np.isfinite(array)]


def _widened(low: float, high: float) -> tuple[float, float]:
    """A non-empty range: a constant channel gets a unit-wide (or relative) range."""
    if high > low:
        return low, high
    pad = 0.5 * abs(low) if low else 0.5
    return low - pad, high + pad


def field_limits(stacks: Sequence[torch.Tensor]) -> tuple[tuple[float, float], ...]:
    """Per channel, one ``(vmin, vmax)`` for all ``stacks (N, C, H, W)``: the
    :data:`FIELD_PERCENTILES` of every finite value of that channel, over all of them."""
    limits = []
    for channel in range(stacks[0].shape[1]):
        values = np.concatenate([_finite(stack[:, channel]) for stack in stacks])
        if values.size == 0:
            limits.append((0.0, 1.0))
            continue
        low, high = np.percentile(values, FIELD_PERCENTILES)
        limits.append(_widened(float(low), float(high)))
    return tuple(limits)


def residual_limits(residuals: Sequence[torch.Tensor]) -> tuple[float, float]:
    """One ``(vmin, vmax)`` of ``|R|`` for all ``residuals``: the lowest lower and the
    highest upper :data:`RESIDUAL_PERCENTILES` of the stacks, so every stack's bulk lies
    inside (the data's floor and the noisiest model alike)."""
    lows, highs = [], []
    for residual in residuals:
        values = np.abs(_finite(residual))
        values = values[values > 0]
        if values.size:
            low, high = np.percentile(values, RESIDUAL_PERCENTILES)
            lows.append(float(low))
            highs.append(float(high))
    if not lows:
        return 1e-3, 1.0
    low, high = min(lows), max(highs)
    if high <= low:
        low, high = low / 10.0, high * 10.0
    return low, high


def colour_scales(
    fields: Sequence[torch.Tensor], residuals: Sequence[torch.Tensor]
) -> ColourScales:
    """The shared colour scales of every stack of ``fields`` and ``residuals`` shown."""
    return ColourScales(field_limits(fields), residual_limits(residuals))


# --------------------------------------------------------------------------- sample grids
@dataclass(frozen=True)
class Row:
    """One row of a sample figure: a label, a sample's channels ``(C, H, W)`` and its
    residual ``(R, H, W)``."""

    label: str
    fields: torch.Tensor
    residual: torch.Tensor

    @property
    def mse(self) -> float:
        return float(self.residual.to(torch.float64).square().mean())


def _channel_name(channels: Sequence[str], index: int) -> str:
    return channels[index] if index < len(channels) else f"channel {index}"


def _residual_name(index: int, count: int) -> str:
    return f"|R{index}|" if count > 1 else "|R|"


def rows_figure(
    rows: Sequence[Row], *, channels: Sequence[str], title: str, scales: ColourScales | None = None
) -> Figure:
    """One row per :class:`Row`: its channels on the shared linear scales, then ``|R|`` of
    every residual channel on the shared log scale (computed from ``rows`` unless
    ``scales`` is given, e.g. shared with companion figures). One colour bar per column;
    each row is labelled on its left with its label and its residual MSE."""
    from matplotlib.colors import LogNorm

    if scales is None:
        scales = colour_scales([r.fields[None] for r in rows], [r.residual[None] for r in rows])
    n_fields, n_residual = rows[0].fields.shape[0], rows[0].residual.shape[0]
    columns = n_fields + n_residual
    figure = agg_figure((2.1 * columns + 0.6, 1.9 * len(rows) + 1.0))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    low, high = scales.residual
    norm = LogNorm(vmin=low, vmax=high, clip=True)
    images = []
    for index, row in enumerate(rows):
        for column in range(columns):
            axis = axes[index, column]
            if column < n_fields:
                vmin, vmax = scales.fields[column]
                image = axis.imshow(
                    row.fields[column].double().cpu().numpy(), cmap="viridis", vmin=vmin, vmax=vmax
                )
            else:
                values = row.residual[column - n_fields].double().abs().clamp_min(RESIDUAL_TINY)
                image = axis.imshow(values.cpu().numpy(), cmap="magma", norm=norm)
            axis.set_xticks([])
            axis.set_yticks([])
            if index == 0:
                images.append(image)
        axes[index, 0].set_ylabel(f"{row.label}\nresidual MSE {row.mse:.2e}", fontsize=7)
    for column, image in enumerate(images):
        name = (
            _channel_name(channels, column)
            if column < n_fields
            else _residual_name(column - n_fields, n_residual)
        )
        axes[0, column].set_title(name, fontsize=9)
        bar = figure.colorbar(image, ax=axes[:, column], location="bottom", shrink=0.85)
        _style_colorbar(bar, log=column >= n_fields)
    figure.suptitle(wrapped_title(title, figure), fontsize=9)
    return figure


def wrapped_title(title: str, figure: Figure, fontsize: float = 9.0) -> str:
    """``title`` broken into lines that fit the figure's width (about 0.6 em a character at
    ``fontsize`` points), so a long title is never cut at the figure's edges."""
    import textwrap

    width_points = figure.get_figwidth() * 72.0
    characters = max(20, int(width_points / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(title, characters)) if len(title) > characters else title


def _style_colorbar(bar: Colorbar, *, log: bool) -> None:
    """Decade ticks on a log bar; at most four compact ticks on a linear one, so that the
    labels of a narrow bar never run into each other."""
    from matplotlib.ticker import MaxNLocator

    if log:
        decade_ticks(bar.ax.xaxis, most=6)
    else:
        bar.ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        if hasattr(bar.formatter, "set_powerlimits"):
            bar.formatter.set_powerlimits((-2, 3))
        bar.update_ticks()
    bar.ax.tick_params(labelsize=6)
    bar.ax.xaxis.get_offset_text().set_fontsize(6)


def sample_rows(
    fields: torch.Tensor, residual: torch.Tensor, labels: Sequence[str] | None = None
) -> list[Row]:
    """Rows of ``fields (B, C, H, W)`` and ``residual (B, R, H, W)``, labelled ``labels`` or
    ``sample 0``, ``sample 1``, ..."""
    labels = labels or [f"sample {i}" for i in range(fields.shape[0])]
    return [Row(label, f, r) for label, f, r in zip(labels, fields, residual, strict=True)]


def save_sample_grid(
    path: Path,
    fields: torch.Tensor,
    residual: torch.Tensor,
    *,
    channels: tuple[str, ...],
    title: str,
    labels: Sequence[str] | None = None,
    scales: ColourScales | None = None,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> Path:
    """Draw samples ``fields (B, C, H, W)`` beside their ``|residual|`` maps, one row per
    sample, on shared colour scales (``scales``: shared with other figures too); writes
    ``path`` in ``figure_format`` and returns the path written."""
    figure = rows_figure(
        sample_rows(fields, residual, labels), channels=channels, title=title, scales=scales
    )
    return save_figure(figure, path, figure_format)


def comparison_rows(
    rows: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
) -> list[Row]:
    """``(label, fields (1, C, H, W), residual (1, R, H, W))`` -> one :class:`Row` each."""
    return [Row(label, fields[0], residual[0]) for label, fields, residual in rows]


def save_comparison(
    path: Path,
    rows: list[tuple[str, torch.Tensor, torch.Tensor]],
    *,
    channels: tuple[str, ...],
    title: str,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> Path:
    """One sample per row ``(label, fields (1, C, H, W), residual (1, R, H, W))`` (a held-out
    sample labelled :data:`REFERENCE_LABEL`, then one per model) on colour scales shared by
    all rows, so that a lower residual reads as a darker map."""
    figure = rows_figure(comparison_rows(rows), channels=channels, title=title)
    return save_figure(figure, path, figure_format)


# --------------------------------------------------------------------------- histograms
def positive_finite(values: torch.Tensor | Sequence[float]) -> np.ndarray:
    """The finite, positive values (what a log axis can show), as float64."""
    array = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu()).ravel()
    return array[np.isfinite(array) & (array > 0)]


def log_bins(groups: Sequence[np.ndarray], bins: int = 48) -> np.ndarray:
    """About ``bins`` bin edges, evenly spaced in log (2 to 10 to a decade), from below the
    lowest to above the highest value of every group, so all histograms of a figure share
    them."""
    values = np.concatenate([g for g in groups if g.size] or [np.array([1.0])])
    low, high = math.log10(values.min()), math.log10(values.max())
    per_decade = min(10, max(2, round(bins / max(high - low, 1e-9))))
    low = math.floor(low * per_decade) / per_decade
    high = max(math.ceil(high * per_decade) / per_decade, low + 1.0 / per_decade)
    count = round((high - low) * per_decade) + 1
    return np.logspace(low, high, count)


def _covering(edges: np.ndarray, values: np.ndarray) -> slice:
    """The bins of ``edges`` that cover ``values`` (a step histogram then draws no
    baseline across bins far from its own values)."""
    first = max(int(np.searchsorted(edges, values.min(), side="right")) - 1, 0)
    last = min(int(np.searchsorted(edges, values.max(), side="left")), len(edges) - 1)
    return slice(first, max(last, first + 1) + 1)


@dataclass(frozen=True)
class Histogram:
    """One histogram of per-sample values on a log axis."""

    values: np.ndarray
    """The values drawn: the finite, positive ones."""
    counts: np.ndarray
    edges: np.ndarray
    """``len(counts) + 1`` bin edges, a run of the edges shared by the whole figure."""
    left_out: int
    """Values that were not finite and positive (a log axis cannot show them)."""


def histograms(
    groups: Mapping[str, torch.Tensor | Sequence[float]], *, bins: int = 48
) -> dict[str, Histogram]:
    """Per label, the histogram of its values on bins shared by all labels
    (:func:`log_bins`), each restricted to the bins its values cover."""
    kept = {label: positive_finite(values) for label, values in groups.items()}
    edges = log_bins(list(kept.values()), bins)
    result = {}
    for label, values in kept.items():
        total = int(torch.as_tensor(groups[label]).numel())
        own = edges[_covering(edges, values)] if values.size else edges[:2]
        counts, _ = np.histogram(values, bins=own)
        result[label] = Histogram(values, counts, own, total - values.size)
    return result


def residual_histogram_figure(
    per_sample: Mapping[str, torch.Tensor | Sequence[float]],
    *,
    reference: torch.Tensor | Sequence[float] | None,
    title: str,
) -> Figure:
    """A histogram of per-sample residual MSE: one step histogram per model
    (``per_sample[label]``), on shared logarithmic bins, with the held-out data's own
    (``reference``, the floor, labelled :data:`FLOOR_LABEL`) filled in grey and its mean as
    a dashed line. Values that are not finite and positive are left out and counted in the
    legend."""
    groups = dict(per_sample)
    if reference is not None:
        groups = {FLOOR_LABEL: reference, **groups}
    figure = agg_figure((6.4, 3.6))
    axis = figure.subplots()
    for label, histogram in histograms(groups).items():
        name = f"{label}, {histogram.values.size} samples" + (
            f" ({histogram.left_out} not finite)" if histogram.left_out else ""
        )
        if label == FLOOR_LABEL and reference is not None:
            axis.stairs(histogram.counts, histogram.edges, fill=True, color="0.8", label=name)
            if histogram.values.size:
                mean = float(histogram.values.mean())
                axis.axvline(
                    mean, color="0.4", linestyle="--", linewidth=1.0, label=f"floor mean {mean:.1e}"
                )
        else:
            axis.stairs(histogram.counts, histogram.edges, linewidth=1.4, label=name)
    log_axis(axis, "x")
    axis.set_ylim(bottom=0)
    axis.set_xlabel("residual MSE per sample", fontsize=8)
    axis.set_ylabel("samples", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=7)
    axis.set_title(title, fontsize=9)
    return figure


def save_residual_histogram(
    path: Path,
    per_sample: Mapping[str, torch.Tensor | Sequence[float]],
    *,
    reference: torch.Tensor | Sequence[float] | None,
    title: str,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> Path:
    """Write :func:`residual_histogram_figure` to ``path``; returns the path written."""
    figure = residual_histogram_figure(per_sample, reference=reference, title=title)
    return save_figure(figure, path, figure_format)


# --------------------------------------------------------------------------- spectra
def spectra_figure(
    wavenumbers: list[int], curves: dict[str, dict[str, list[float]]], *, title: str
) -> Figure:
    """Mean radial power spectra per channel: ``curves[label][channel] -> power``, on
    log-log axes with decade ticks."""
    channels = sorted({c for per_label in curves.values() for c in per_label})
    figure = agg_figure((3.2 * len(channels), 2.8))
    axes = figure.subplots(1, len(channels), squeeze=False)[0]
    for axis, channel in zip(axes, channels, strict=True):
        for label, per_label in curves.items():
            if channel in per_label:
                k = wavenumbers[1 : len(per_label[channel])]
                axis.plot(k, per_label[channel][1:], label=label)
        log_axis(axis, "xy")
        axis.set_title(channel, fontsize=9)
        axis.set_xlabel("wavenumber", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0].set_ylabel("mean power", fontsize=8)
    axes[0].legend(fontsize=7)
    figure.suptitle(wrapped_title(title, figure), fontsize=9)
    return figure


def save_spectra(
    path: Path,
    wavenumbers: list[int],
    curves: dict[str, dict[str, list[float]]],
    *,
    title: str,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> Path:
    """Write :func:`spectra_figure` to ``path``; returns the path written."""
    return save_figure(spectra_figure(wavenumbers, curves, title=title), path, figure_format)


def figure_texts(figure: Figure) -> list[str]:
    """Every text a figure shows: its title, axis titles and labels, legends, annotations
    (what a reader sees, for checks of the wording)."""
    suptitle = getattr(figure, "_suptitle", None)  # get_suptitle() needs matplotlib 3.8
    texts = [suptitle.get_text()] if suptitle is not None else []
    for axis in figure.axes:
        texts += [axis.get_title(loc) for loc in ("left", "center", "right")]
        texts += [axis.get_xlabel(), axis.get_ylabel()]
        texts += [text.get_text() for text in axis.texts]
        legend = axis.get_legend()
        if legend is not None:
            texts += [text.get_text() for text in legend.get_texts()]
    return [text for text in texts if text]


__all__ = [
    "DEFAULT_FIGURE_FORMAT",
    "FIGURE_FORMATS",
    "FLOOR_LABEL",
    "REFERENCE_LABEL",
    "REFERENCE_SAMPLES_LABEL",
    "ColourScales",
    "Histogram",
    "Row",
    "agg_figure",
    "check_figure_format",
    "colour_scales",
    "decade_ticks",
    "field_limits",
    "figure_path",
    "figure_texts",
    "histograms",
    "log_axis",
    "log_bins",
    "positive_finite",
    "residual_histogram_figure",
    "residual_limits",
    "rows_figure",
    "save_comparison",
    "save_figure",
    "save_residual_histogram",
    "save_sample_grid",
    "save_spectra",
    "spectra_figure",
]
