"""The fidelity band: do a model's samples still look like the data, compared with the
base model's samples?

Physics-improved models (fine-tuned or guided) are judged against the base model they
start from, with two conditions, each a factor ``band`` (1.5 in pirf's protocol) of the
base model's own value:

* ``mmd`` (the joint field-and-spectrum MMD to held-out data) may not grow by more than
  ``band``;
* ``diversity`` (the spread of the samples relative to the data's) may not shrink or grow
  by more than ``band``.

The second condition catches what the first can miss. A residual that is linear in the
fields falls with the square of their amplitude, so shrinking every sample is a cheap way
to a low residual; and when the base model's MMD is dominated by small-scale noise,
removing that noise lowers the MMD about as much as the shrinking raises it. PIRF with
back-propagation through every step did exactly this on Helmholtz: residual 35x lower,
MMD 1.12x the base model's, diversity 0.43 of it (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BAND = 1.5
"""The factor of the benchmark protocol (docs/evaluation.md)."""

Fidelity = Mapping[str, float | None]


@dataclass(frozen=True)
class FidelityBand:
    """The band around ``base`` (the base model's fidelity numbers; module docstring).

    ``band`` None, or a metric missing on either side, imposes nothing for that metric.
    """

    band: float | None
    base: Fidelity

    def _limits(self, key: str) -> tuple[float, float] | None:
        value = self.base.get(key)
        if self.band is None or value is None:
            return None
        if key == "mmd":
            return (0.0, self.band * value)
        return (value / self.band, self.band * value)

    def violations(self, fidelity: Fidelity) -> list[str]:
        """One phrase per metric of ``fidelity`` outside the band (empty: inside)."""
        found = []
        for key in ("mmd", "diversity"):
            limits, value = self._limits(key), fidelity.get(key)
            if limits is None or value is None:
                continue
            low, high = limits
            if not low <= value <= high:
                side = "above" if value > high else "below"
                bound = high if value > high else low
                found.append(
                    f"{key} {value:.4g} is {side} {bound:.4g} ({self.band} x the base "
                    f"model's {self.base[key]:.4g})"
                    if side == "above"
                    else f"{key} {value:.4g} is {side} {bound:.4g} (the base model's "
                    f"{self.base[key]:.4g} / {self.band})"
                )
        return found

    def inside(self, fidelity: Fidelity) -> bool:
        """Whether every metric of ``fidelity`` lies in the band."""
        return not self.violations(fidelity)


__all__ = ["DEFAULT_BAND", "FidelityBand"]
