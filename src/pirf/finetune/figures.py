"""Curves of a fine-tuning run: reward, residual and fidelity against the iteration.

One figure (PNG, PDF or SVG), three panels, drawn from ``metrics.jsonl`` with matplotlib's
Agg canvas:

* the training loss (the residual loss relative to the base model, so 1 is the base
  model and 0.1 a tenfold reduction) and the regulariser;
* the evaluated residual MSE at each sampler budget, with the base model's level dashed;
* the fidelity distance with the base model's level and the guard's band, so reward
  hacking (residual down, fidelity up) is visible at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pirf.evaluation.figures import DEFAULT_FIGURE_FORMAT, agg_figure, log_axis, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES = "curves.png"
"""The curves' file name (its suffix follows the run's figure format)."""


def save_curves(
    folder: Path,
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    *,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> list[str]:
    """Draw the run's curves (:func:`curves_figure`) to ``folder/curves.<figure_format>``;
    returns the paths written (none for a run without records)."""
    figure = curves_figure(records, summary)
    if figure is None:
        return []
    return [str(save_figure(figure, folder / CURVES, figure_format))]


def curves_figure(records: list[dict[str, Any]], summary: dict[str, Any]) -> Figure | None:
    """The run's three panels from its ``metrics.jsonl`` records and summary (``None``
    without records). Every log axis labels its decades ``10^k``."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    figure = agg_figure((13, 3.6))
    loss_axis, residual_axis, fidelity_axis = figure.subplots(1, 3)

    if train:
        iterations = [r["iteration"] for r in train]
        loss_axis.plot(iterations, [r["reward_loss"] for r in train], label="reward loss")
        if any(r["regulariser"] for r in train):
            loss_axis.plot(iterations, [r["regulariser"] for r in train], label="regulariser")
        loss_axis.axhline(1.0, color="grey", linestyle="--", linewidth=0.8, label="base model")
        log_axis(loss_axis, "y")
        loss_axis.legend(fontsize=7)
    loss_axis.set_title("training loss (residual / base residual)", fontsize=9)
    loss_axis.set_xlabel("iteration")

    base = summary.get("base") or {}
    for key in sorted({k for r in evals for k in r["residual_mse"]}, key=int):
        points = [
            (r["iteration"], r["residual_mse"][key]) for r in evals if key in r["residual_mse"]
        ]
        line = residual_axis.plot(*zip(*points, strict=True), marker="o", label=f"{key} steps")[0]
        level = base.get("residual_mse", {}).get(key)
        if level:
            residual_axis.axhline(level, color=line.get_color(), linestyle="--", linewidth=0.8)
    log_axis(residual_axis, "y")
    residual_axis.set_title("residual MSE at fixed seeds (dashed: base)", fontsize=9)
    residual_axis.set_xlabel("iteration")
    if evals:
        residual_axis.legend(fontsize=7)

    metric = summary.get("fidelity_metric", "mmd")
    points = [(r["iteration"], r["fidelity"].get(metric)) for r in evals]
    points = [(i, v) for i, v in points if v is not None]
    if points:
        fidelity_axis.plot(*zip(*points, strict=True), marker="o", label=metric)
        base_value = (base.get("fidelity") or {}).get(metric)
        floor = (base.get("fidelity") or {}).get(f"{metric}_floor")
        if base_value:
            fidelity_axis.axhline(base_value, color="grey", linestyle="--", label="base model")
            band = (summary.get("config") or {}).get("fidelity_band")
            if band:
                fidelity_axis.axhline(
                    band * base_value, color="red", linestyle=":", label=f"guard ({band}x base)"
                )
        if floor:
            fidelity_axis.axhline(floor, color="green", linestyle="-.", label="data floor")
        fidelity_axis.legend(fontsize=7)
    fidelity_axis.set_title(f"data fidelity ({metric}; lower is closer to data)", fontsize=9)
    fidelity_axis.set_xlabel("iteration")

    return figure


__all__ = ["CURVES", "curves_figure", "save_curves"]
