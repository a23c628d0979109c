"""The benchmark harness: every method on every PDE under one protocol (``pirf bench``).

See :mod:`pirf.bench.harness` for the stage graph and the output layout,
:mod:`pirf.bench.methods` for how each method is prepared and sampled, and
:mod:`pirf.bench.report` for the report.
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "config": ["BenchConfig"],
        "harness": ["BENCHMARKS", "bench", "plan", "resolve_methods", "resolve_pdes", "run_bench"],
        "methods": ["METHODS"],
        "presets": ["PRESETS", "BenchPreset", "resolve_preset"],
    },
)
