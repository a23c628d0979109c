"""The value-gap figure: the one-step value and the reached values against the noise level.

One figure (PNG, PDF or SVG), one panel per kind of state (data plus noise, the model's own
trajectories), both axes logarithmic. The values are rewards that are minus a residual, so
the figure draws ``-reward`` (the residual): the one-step estimate ``-r(D(x))``, what the
deterministic and the stochastic continuations reach, and on the data panel the clean
data's level. Drawn with matplotlib's Agg canvas, with the log axes and file formats of the
evaluation figures (:mod:`pirf.evaluation.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pirf.evaluation.figures import DEFAULT_FIGURE_FORMAT, agg_figure, log_axis, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES = (
    ("one_step", "one-step estimate  -r(D(x))", "o-"),
    ("ode", "reached, deterministic", "s--"),
    ("sde", "reached, stochastic (mean of runs)", "^-"),
)
PANELS = (("data", "data + noise"), ("trajectory", "model trajectories"))


def _positive(value: float) -> float:
    """``-reward``, kept above zero for the log axis."""
    return max(-value, 1e-300)


def save_value_gap_figure(
    path: Path,
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> Path:
    """Draw the rows of a value-gap report (:func:`pirf.diagnostics.gap.summarise_level`)
    to ``path`` (its suffix that of ``figure_format``); returns the path written."""
    return save_figure(value_gap_figure(rows, title=title), path, figure_format)


def value_gap_figure(rows: Sequence[dict[str, Any]], *, title: str) -> Figure:
    """The value-gap panels of a report's rows, both axes logarithmic with decade ticks."""
    figure = agg_figure((10, 3.8))
    axes = figure.subplots(1, len(PANELS), sharey=True)
    for axis, (kind, label) in zip(axes, PANELS, strict=True):
        chosen = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["sigma"])
        sigmas = [r["sigma"] for r in chosen]
        for key, name, style in CURVES:
            axis.plot(sigmas, [_positive(r[key]) for r in chosen], style, label=name)
        if kind == "data" and chosen:
            axis.axhline(
                _positive(chosen[0]["clean"]),
                color="grey",
                linestyle=":",
                label="clean data  -r(x0)",
            )
        log_axis(axis, "xy")
        axis.set_xlabel("noise level sigma")
        axis.set_title(label, fontsize=9)
        axis.grid(True, which="major", linewidth=0.3)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("residual MSE (-reward)")
    figure.suptitle(title, fontsize=9)
    return figure


__all__ = ["save_value_gap_figure", "value_gap_figure"]
