"""The benchmark harness: every method on every PDE under one protocol (``pirf bench``).

See :mod:`pirf.bench.harness` for the stage graph and the output layout,
:mod:`pirf.bench.methods` for how each method is prepared and sampled, and
:mod:`pirf.bench.report` for the report.
"""

from pirf.bench.config import BenchConfig
from pirf.bench.harness import BENCHMARKS, bench, plan, resolve_methods, resolve_pdes, run_bench
from pirf.bench.methods import METHODS
from pirf.bench.presets import PRESETS, BenchPreset, resolve_preset

__all__ = [
    "BENCHMARKS",
    "METHODS",
    "PRESETS",
    "BenchConfig",
    "BenchPreset",
    "bench",
    "plan",
    "resolve_methods",
    "resolve_pdes",
    "resolve_preset",
    "run_bench",
]
