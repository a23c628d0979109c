"""Sizes of a benchmark run: how much data, training and evaluation each preset means.

``tiny`` runs on a 2-core CPU (32^2 grids, the tiny network), ``small`` on one GPU
(64^2), ``paper`` is the reference setting (its grids, 55M-parameter network, the 1,600
evaluation samples of the reference). Every number can be overridden on the command line
(``pirf bench --n-eval 64 --tune-iters 40 ...``), and the report records what was used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from pirf.errors import PirfError, option


@dataclass(frozen=True)
class BenchPreset:
    """What one preset runs (see the module docstring)."""

    name: str
    train: int
    test: int
    val: int
    eval_n: int
    """Samples per method and sampler budget in the evaluation (test seeds)."""
    select_n: int
    """Samples per candidate setting in the baselines' sweeps (validation seeds)."""
    base_iters: int | None
    """Base-model training iterations (None: the model preset's default)."""
    tune_iters: int
    """PIRF fine-tuning iterations."""
    tune_batch: int
    baseline_iters: int
    """PIDM and PG-Diffusion training iterations."""
    baseline_batch: int
    pde_base_iters: tuple[tuple[str, int], ...] = ()
    """Per-PDE base-model iterations where a PDE needs other than ``base_iters`` (unless
    ``base_iters`` is given explicitly)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def base_iterations(self, pde: str) -> int | None:
        """The base-model iterations of ``pde`` (None: the model preset's default)."""
        if self.base_iters is not None:
            return self.base_iters
        return dict(self.pde_base_iters).get(pde)


PRESETS: dict[str, BenchPreset] = {
    # Kolmogorov's tiny base model trains twice as long: at 1,200 iterations its samples
    # were 7.5x the data floor in MMD, at 2,400 (with the forcing's phase) 1.4x
    # (docs/kolmogorov.md).
    "tiny": BenchPreset(
        "tiny", 4000, 512, 256, 256, 32, None, 120, 8, 200, 16, (("kolmogorov", 2400),)
    ),
    "small": BenchPreset("small", 20_000, 1024, 512, 512, 64, None, 400, 16, 1000, 32),
    "paper": BenchPreset("paper", 50_000, 1600, 1024, 1600, 128, None, 1000, 20, 4000, 64),
}

OVERRIDABLE = (
    "train",
    "test",
    "val",
    "eval_n",
    "select_n",
    "base_iters",
    "tune_iters",
    "tune_batch",
    "baseline_iters",
    "baseline_batch",
)


def resolve_preset(name: str, **overrides: int | None) -> BenchPreset:
    """The preset ``name`` with the given (non-None) fields replaced; checked."""
    if name not in PRESETS:
        raise PirfError(f"unknown bench preset '{name}'; use one of {', '.join(PRESETS)}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(changes) - set(OVERRIDABLE)
    if unknown:
        raise PirfError(f"unknown bench setting(s) {', '.join(sorted(unknown))}")
    preset = replace(PRESETS[name], **changes)
    for key in OVERRIDABLE:
        value = getattr(preset, key)
        if value is not None and value <= 0:
            raise PirfError(f"{option(key)} must be positive, got {value}")
    if preset.test < 4 or preset.val < 4:
        raise PirfError(
            f"{option('test')} and {option('val')} must be at least 4 "
            "(fidelity compares halves)"
        )
    if preset.eval_n < 4 or preset.select_n < 2:
        raise PirfError(
            f"{option('eval_n')} must be at least 4 and {option('select_n')} at least 2 "
            "(fidelity compares halves of the samples)"
        )
    return preset


__all__ = ["OVERRIDABLE", "PRESETS", "BenchPreset", "resolve_preset"]
