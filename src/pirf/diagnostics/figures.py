"""The value-gap figure: the one-step value and the reached values against the noise level.

One PNG, one panel per kind of state (data plus noise, the model's own trajectories), both
axes logarithmic. The values are rewards that are minus a residual, so the figure draws
``-reward`` (the residual): the one-step estimate ``-r(D(x))``, what the deterministic and
the stochastic continuations reach, and on the data panel the clean data's level. Drawn
with matplotlib's Agg canvas, as the evaluation figures are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
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


def save_value_gap_figure(path: Path, rows: Sequence[dict[str, Any]], *, title: str) -> Path:
    """Draw the rows of a value-gap report (:func:`pirf.diagnostics.gap.summarise_level`)
    to ``path``; returns it."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
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
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("noise level sigma")
        axis.set_title(label, fontsize=9)
        axis.grid(True, which="major", linewidth=0.3)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("residual MSE (-reward)")
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


__all__ = ["save_value_gap_figure"]
