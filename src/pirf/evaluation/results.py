"""Typed results: the headline numbers of an evaluation, and a run's summary.

The full metrics of an evaluation are a nested tree (``pirf.evaluation.metrics``), which
``report.json`` keeps whole. What tables, guards, sweeps and goals compare is a handful
of numbers, the :class:`Headline`; code reads them as attributes, and every JSON file
stores them under one set of keys, written and read here only (:meth:`Headline.to_json`,
:meth:`Headline.from_json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Headline:
    """The numbers of one row of an evaluation table (``None`` where not measured)."""

    residual_mse: float | None = None
    """Mean over samples of the residual MSE (physical units)."""
    residual_mse_median: float | None = None
    residual_mse_p90: float | None = None
    residual_mae: float | None = None
    consistency: float | None = None
    """Mean relative L2 distance between the solution part and a re-solve."""
    reference_mse: float | None = None
    """Mean over samples of the reference code's residual MSE (``--residual reference``)."""
    reference_mse_median: float | None = None
    mmd: float | None = None
    """Joint field-and-spectrum MMD to held-out data."""
    mmd_floor: float | None = None
    """The same distance between two halves of held-out data."""
    energy: float | None = None
    spectrum_error: float | None = None
    diversity: float | None = None
    """Mean pairwise distance of the samples over that of the data."""
    statistics: Mapping[str, float | None] = field(default_factory=dict)
    """PDE-specific statistics of the samples (e.g. Darcy's fraction of high cells)."""

    def to_json(self) -> dict[str, Any]:
        """Flat JSON: every number under its name, the statistics beside them."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "statistics"}
        return {**values, **dict(self.statistics)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Headline:
        """The headline a :meth:`to_json` dictionary (or a report row's) holds."""
        names = {f.name for f in fields(cls)} - {"statistics"}
        values = {name: data.get(name) for name in names}
        statistics = {key: value for key, value in data.items() if key not in names}
        return cls(**values, statistics=statistics)

    def fidelity(self) -> dict[str, float | None]:
        """What the fidelity band and the guards compare: ``mmd`` and ``diversity``."""
        return {"mmd": self.mmd, "diversity": self.diversity}


def _value(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def headline(metrics: Mapping[str, Any]) -> Headline:
    """The :class:`Headline` of a metrics tree (:func:`pirf.evaluation.evaluate_fields`)."""
    physics, fidelity = metrics.get("physics", {}), metrics.get("fidelity", {})
    statistics = {
        name: stat.get("samples") if isinstance(stat, Mapping) else None
        for name, stat in (fidelity.get("statistics") or {}).items()
    }
    return Headline(
        residual_mse=_value(physics, "residual", "mse", "mean"),
        residual_mse_median=_value(physics, "residual", "mse", "median"),
        residual_mse_p90=_value(physics, "residual", "mse", "p90"),
        residual_mae=_value(physics, "residual", "mae", "mean"),
        consistency=_value(physics, "consistency", "mean"),
        reference_mse=_value(physics, "reference_residual", "mse", "mean"),
        reference_mse_median=_value(physics, "reference_residual", "mse", "median"),
        mmd=_value(fidelity, "distance", "joint", "mmd", "value"),
        mmd_floor=_value(fidelity, "distance", "joint", "mmd", "floor"),
        energy=_value(fidelity, "distance", "joint", "energy", "value"),
        spectrum_error=_value(fidelity, "spectrum", "log10_error", "mean", "value"),
        diversity=_value(fidelity, "diversity", "ratio", "value"),
        statistics=statistics,
    )


@dataclass(frozen=True)
class RunSummary:
    """What a run of the run loop did (:class:`pirf.training.runloop.RunLoop`), with its
    task's own entries in ``details``; :meth:`to_json` is ``summary.json``."""

    out: str
    checkpoint: str | None
    """The final checkpoint, or None when the run stopped before its end."""
    completed: bool
    stopped: Mapping[str, Any] | None
    """``{"iteration", "reason"}`` when a guard ended the run."""
    start_iteration: int
    iterations: int
    target_iterations: int
    final_loss: float | None
    """The last line of ``metrics.jsonl``: the mean loss over its interval..."""
    final_loss_iterations: int | None
    """... of this many iterations."""
    final_lr: float | None
    seconds: float
    total_seconds: float
    seconds_per_iteration: float | None
    """Median over this invocation's steps."""
    metrics: str
    tracker: str | None = None
    """How to look at the run in its tracker (``--tracker``), if any."""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        return {**values, **dict(self.details)}


__all__ = ["Headline", "RunSummary", "headline"]
