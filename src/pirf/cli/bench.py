"""``pirf bench``: every method on every PDE under one protocol, resumable, with a report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from pirf.bench.config import DEFAULTS, BenchConfig
from pirf.cli._common import RUN_EXTRAS, console, console_err, emit_json, use_threads
from pirf.cli.generated import command


def preset_sizes() -> dict[str, dict[str, Any]]:
    """Per size setting, each preset's value (shown as the defaults in the help)."""
    from pirf.bench.presets import PRESETS

    sizes: dict[str, dict[str, Any]] = {}
    for name, preset in PRESETS.items():
        for key, value in preset.to_json().items():
            if key != "name" and value is not None and not isinstance(value, list):
                sizes.setdefault(key, {})[name] = value
    return sizes


def _run(config: Any, *, threads: int | None = None, as_json: bool = False) -> None:
    from pirf.bench import bench as run_bench
    from pirf.settings import with_values

    use_threads(threads)
    if as_json:
        config = with_values(config, {"progress": False})
    command = "pirf " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    say = None if as_json else (lambda text: console_err.print(text, highlight=False))
    report = run_bench(config, say=say, command=command)
    if as_json:
        emit_json(report)
        return
    print_summary(report)


def print_summary(report: dict[str, Any]) -> None:
    """Residual MSE of every method at every budget, one row per PDE and method."""
    preset = report["settings"]["preset"]
    budgets = report["settings"]["steps"]
    table = Table(title=f"pirf bench ({preset['name']}): residual MSE", title_justify="left")
    table.add_column("PDE", style="bold")
    table.add_column("method")
    for count in budgets:
        table.add_column(f"@ {count}", justify="right")
    table.add_column("bar", justify="left")
    for pde, entry in report["pdes"].items():
        rows = entry["rows"]
        for method in dict.fromkeys(r["method"] for r in rows):
            values = {
                r["steps"]: r["headline"]["residual_mse"] for r in rows if r["method"] == method
            }
            bar = ""
            if entry["bars"].get(method) is not None:
                bar = "met" if entry["bars"][method]["met"] else "not met"
            table.add_row(
                pde,
                report["methods"][method],
                *[f"{values[c]:.3g}" if c in values else "-" for c in budgets],
                bar,
            )
    console.print(table)
    out = report["settings"].get("out", "")
    console.print(f"report: {Path(out) / 'report.md'} (and report.json, figures/)", highlight=False)


bench = command(
    BenchConfig,
    DEFAULTS,
    _run,
    extra=RUN_EXTRAS,
    doc="Run the baselines and PIRF on the benchmarks; write report.md, report.json, "
    "figures (docs/bench.md).",
    notes={
        name: ", ".join(f"{preset} {value}" for preset, value in values.items())
        for name, values in preset_sizes().items()
    },
)
