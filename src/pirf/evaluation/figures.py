"""Figures of evaluation: samples beside their residual maps, mean power spectra.

Drawn with matplotlib's Agg canvas (no display, no global pyplot state), so they work in
scripts, tests and worker processes alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def save_sample_grid(
    path: Path,
    fields: torch.Tensor,
    residual: torch.Tensor,
    *,
    channels: tuple[str, ...],
    title: str,
) -> Path:
    """Draw samples ``fields (B, C, H, W)`` beside ``log10 |residual|`` maps, one row per sample,
    to a PNG at ``path``."""
    count, n_fields = fields.shape[0], fields.shape[1]
    n_residual = residual.shape[1]
    columns = n_fields + n_residual
    figure = agg_figure((2.2 * columns, 2.0 * count + 0.5))
    axes = figure.subplots(count, columns, squeeze=False)
    mse = residual.flatten(1).square().mean(dim=1)
    log_residual = residual.abs().clamp_min(1e-30).log10()
    for row in range(count):
        for column in range(columns):
            axis = axes[row, column]
            if column < n_fields:
                image = axis.imshow(fields[row, column].numpy(), cmap="viridis")
                label = channels[column] if column < len(channels) else f"channel {column}"
            else:
                index = column - n_fields
                image = axis.imshow(log_residual[row, index].numpy(), cmap="magma")
                label = f"log10|R{index if n_residual > 1 else ''}|  mse {mse[row]:.2e}"
            if row == 0 or column >= n_fields:
                axis.set_title(label, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
            figure.colorbar(image, ax=axis, shrink=0.8).ax.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def save_comparison(
    path: Path,
    rows: list[tuple[str, torch.Tensor, torch.Tensor]],
    *,
    channels: tuple[str, ...],
    title: str,
) -> Path:
    """One sample per row ``(label, fields (1, C, H, W), residual (1, R, H, W))``: its
    channels, then ``log10 |R|`` on a colour scale shared by all rows, so that a lower
    residual reads as a darker map."""
    n_fields, n_residual = rows[0][1].shape[1], rows[0][2].shape[1]
    columns = n_fields + n_residual
    figure = agg_figure((2.4 * columns, 2.1 * len(rows) + 0.5))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    logs = [r.abs().clamp_min(1e-30).log10() for _, _, r in rows]
    top = max(float(v.max()) for v in logs)
    low = top - 4.0  # four decades: a tenfold lower residual is a visibly darker map
    for row, ((label, fields, residual), log_r) in enumerate(zip(rows, logs, strict=True)):
        mse = float(residual.square().mean())
        for column in range(columns):
            axis = axes[row, column]
            if column < n_fields:
                image = axis.imshow(fields[0, column].numpy(), cmap="viridis")
                name = channels[column] if column < len(channels) else f"channel {column}"
                axis.set_title(f"{label}: {name}", fontsize=8)
            else:
                index = column - n_fields
                image = axis.imshow(log_r[0, index].numpy(), cmap="magma", vmin=low, vmax=top)
                axis.set_title(f"{label}: log10|R|, mse {mse:.2e}", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
            figure.colorbar(image, ax=axis, shrink=0.8).ax.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def save_spectra(
    path: Path,
    wavenumbers: list[int],
    curves: dict[str, dict[str, list[float]]],
    *,
    title: str,
) -> Path:
    """Mean radial power spectra per channel: ``curves[label][channel] -> power``."""
    channels = sorted({c for per_label in curves.values() for c in per_label})
    figure = agg_figure((3.2 * len(channels), 2.8))
    axes = figure.subplots(1, len(channels), squeeze=False)[0]
    for axis, channel in zip(axes, channels, strict=True):
        for label, per_label in curves.items():
            if channel in per_label:
                k = wavenumbers[1 : len(per_label[channel])]
                axis.loglog(k, per_label[channel][1:], label=label)
        axis.set_title(channel, fontsize=9)
        axis.set_xlabel("wavenumber", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0].set_ylabel("mean power", fontsize=8)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path
