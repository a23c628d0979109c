"""Watching a fine-tuning run: fixed-seed evaluations and the guards that stop a bad run.

An evaluation samples ``n`` fields from the same seeds every time, at each sampler budget
of ``steps`` (20, 40, 80 by default), and measures the residual MSE exactly as
``pirf evaluate`` does (physical units, Darcy snapped). At the first budget it also
measures data fidelity against held-out data (field MMD with its floor, spectrum error,
diversity; in the reference data's normalisation, as ``pirf evaluate`` measures it), so
that a residual bought by leaving the data distribution is visible beside
the residual itself (reward hacking).

Two guards stop a run early (the best checkpoint stays):

* :class:`FidelityGuard`: the fidelity leaves a band around the base model's (the MMD
  above ``band`` times its value, or the diversity a factor ``band`` away from it);
* :class:`DriftGuard`: the smoothed training loss climbs above ``factor`` times its
  lowest value so far, the slow upward drift that marks a failing run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pirf.evaluation import PreparedReference, evaluate_fields, residual_summary
from pirf.evaluation.band import FidelityBand
from pirf.evaluation.results import headline
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import Precision, generate

FIDELITY_KEYS = ("mmd", "mmd_floor", "energy", "spectrum_error", "diversity")
FIDELITY_METRIC = "mmd"
"""The fidelity distance the guard and the best-checkpoint choice use (field MMD)."""


@dataclass
class Evaluation:
    """One evaluation of a model at fixed seeds."""

    residual: dict[int, float]
    """Mean residual MSE by sampler steps."""
    residual_median: dict[int, float]
    fidelity: dict[str, float | None]
    """Fidelity headline numbers at the first budget (None without reference data)."""
    samples: torch.Tensor = field(repr=False)
    """Model-space samples of the first budget (CPU)."""
    seconds: float

    def record(self) -> dict[str, Any]:
        """JSON form (keys of the residual dicts as strings)."""
        return {
            "residual_mse": {str(k): v for k, v in self.residual.items()},
            "residual_mse_median": {str(k): v for k, v in self.residual_median.items()},
            "fidelity": self.fidelity,
            "eval_seconds": self.seconds,
        }


@torch.no_grad()
def evaluate_model(
    denoiser: torch.nn.Module,
    pde: PDE,
    normalisation: Normalisation,
    shape: tuple[int, int, int],
    *,
    steps: tuple[int, ...],
    n: int,
    seed: int,
    device: torch.device,
    precision: Precision,
    reference: PreparedReference | None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Sample ``n`` fields at each budget of ``steps`` and measure them (module docstring).
    ``progress`` gets a line as each budget is done."""
    began = time.perf_counter()
    residual, median = {}, {}
    fidelity: dict[str, float | None] = dict.fromkeys(FIDELITY_KEYS)
    first = None
    for index, budget in enumerate(steps):
        result = generate(
            denoiser, n, shape, seed, steps=budget, device=device, precision=precision
        )
        physical = normalisation.to_physical(result.samples.to(torch.float64))
        if index == 0:
            first = result.samples
        if index == 0 and reference is not None:
            metrics = evaluate_fields(
                pde, physical, reference, reference.normalisation, consistency=False
            )
            row = headline(metrics)
            residual[budget] = row.residual_mse
            median[budget] = row.residual_mse_median
            fidelity = {key: getattr(row, key) for key in FIDELITY_KEYS}
        else:
            summary = residual_summary(pde, physical)
            residual[budget] = summary["mse"]["mean"]
            median[budget] = summary["mse"]["median"]
        if progress is not None:
            progress(
                f"  {budget} steps: {n} samples, residual {residual[budget]:.4g} "
                f"({time.perf_counter() - began:.0f} s)"
            )
    assert first is not None
    return Evaluation(residual, median, fidelity, first, time.perf_counter() - began)


class FidelityGuard:
    """Trips when the fidelity leaves the band around the base model's
    (:class:`pirf.evaluation.band.FidelityBand`: the MMD more than ``band`` times the base
    model's, or the diversity more than a factor ``band`` away from it)."""

    def __init__(self, band: float | None, base: Mapping[str, float | None]) -> None:
        self.band = band
        self.base = dict(base)
        self._band = FidelityBand(band, self.base)

    def inside(self, fidelity: Mapping[str, float | None]) -> bool:
        """Whether ``fidelity`` lies in the band (always, without a band or values)."""
        return self._band.inside(fidelity)

    def check(self, fidelity: Mapping[str, float | None]) -> str | None:
        """A reason to stop, or None."""
        found = self._band.violations(fidelity)
        if not found:
            return None
        return "fidelity guard: " + "; ".join(found)


class DriftGuard:
    """Trips when the smoothed loss exceeds ``factor`` times its lowest value so far.

    The loss is smoothed by an exponential average over about ``window`` iterations; the
    guard is silent for the first ``grace`` iterations (warm-up, a noisy start).
    """

    def __init__(self, factor: float | None, *, window: int = 10, grace: int = 20) -> None:
        self.factor = factor
        self.alpha = 1.0 / window
        self.grace = grace
        self.smoothed: float | None = None
        self.lowest = math.inf
        self.seen = 0

    def update(self, loss: float) -> str | None:
        """Feed one iteration's loss; returns a reason to stop, or None."""
        if not math.isfinite(loss):
            return None
        self.seen += 1
        if self.smoothed is None:
            self.smoothed = loss
        else:
            self.smoothed += self.alpha * (loss - self.smoothed)
        if self.seen <= self.grace:
            return None
        self.lowest = min(self.lowest, self.smoothed)
        if self.factor is not None and self.smoothed > self.factor * self.lowest:
            return (
                f"drift guard: the smoothed loss {self.smoothed:.4g} rose above "
                f"{self.factor} x its lowest {self.lowest:.4g}"
            )
        return None

    def state(self) -> dict[str, Any]:
        lowest = None if math.isinf(self.lowest) else self.lowest
        return {"smoothed": self.smoothed, "lowest": lowest, "seen": self.seen}

    def load(self, state: dict[str, Any]) -> None:
        self.smoothed = state.get("smoothed")
        lowest = state.get("lowest")
        self.lowest = math.inf if lowest is None else float(lowest)
        self.seen = int(state.get("seen", 0))


__all__ = [
    "FIDELITY_KEYS",
    "FIDELITY_METRIC",
    "DriftGuard",
    "Evaluation",
    "FidelityGuard",
    "evaluate_model",
]
