"""One results file (``docs/results/<preset>.json``) from several bench directories.

``pirf bench --results-json FILE`` writes the compact results of one bench directory. A
PIRF variant with other settings than the recipe (``--method-option pirf.truncation=5``)
runs in a directory of its own, since a directory holds one run per method name; this
script merges such directories into one file of the documented schema (docs/bench.md,
"The results file"). Each argument is ``DIR`` (every row of its report) or
``DIR:SUFFIX`` (only its PIRF rows, renamed ``pirf-SUFFIX`` and ``pirf-SUFFIX+c``, so
that variants stay apart from the recipe's rows). Every directory's ``report.json`` must
be current: run ``pirf bench ... --report-only`` on it first, with the options of the run
(``--method-option`` included), since the file records that command as the run's.

Usage (the published file; docs/BENCHMARKS.md)::

    python benchmarks/results_file.py --out docs/results/tiny.json \\
        b-poisson b-poisson-k5:k5 b-helmholtz b-helmholtz-k10r:k10r b-darcy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pirf.bench.methods import PIRF_VARIANTS
from pirf.bench.report import results_json


def variant_name(method: str, suffix: str) -> str:
    """``pirf`` -> ``pirf-SUFFIX``, ``pirf+c`` -> ``pirf-SUFFIX+c``, ``pirf-full`` ->
    ``pirf-full-SUFFIX``."""
    if method == "pirf":
        return f"pirf-{suffix}"
    if method == "pirf+c":
        return f"pirf-{suffix}+c"
    return f"{method}-{suffix}"


def rows_of(results: dict[str, Any], suffix: str | None) -> dict[str, list[dict[str, Any]]]:
    """Per PDE, the rows a directory contributes: all of them, or its PIRF rows renamed."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for pde, entry in results["pdes"].items():
        kept = []
        for row in entry["rows"]:
            if suffix is None:
                kept.append(row)
            elif row["method"] in PIRF_VARIANTS:
                kept.append({**row, "method": variant_name(row["method"], suffix)})
        rows[pde] = kept
    return rows


def merge(runs: list[tuple[Path, str | None]]) -> dict[str, Any]:
    """The merged results file of ``runs`` (directory, suffix or None)."""
    preset = None
    commands: list[str] = []
    pdes: dict[str, dict[str, Any]] = {}
    for directory, suffix in runs:
        report_path = directory / "report.json"
        if not report_path.is_file():
            raise SystemExit(f"{report_path} does not exist: run pirf bench there first")
        results = results_json(json.loads(report_path.read_text()))
        if preset is not None and results["preset"] != preset:
            raise SystemExit(f"{directory} is preset {results['preset']}, not {preset}")
        preset = results["preset"]
        # A report rewritten with --report-only records that invocation; the file names the
        # run that made the numbers.
        commands.append(results["command"].replace(" --report-only", ""))
        for pde, rows in rows_of(results, suffix).items():
            entry = pdes.setdefault(pde, {"floor": results["pdes"][pde]["floor"], "rows": []})
            known = {(row["method"], row["steps"]) for row in entry["rows"]}
            clash = [row for row in rows if (row["method"], row["steps"]) in known]
            if clash:
                raise SystemExit(
                    f"{directory}: {pde} {clash[0]['method']} at {clash[0]['steps']} steps is "
                    "already in an earlier directory; give this one a suffix"
                )
            entry["rows"].extend(rows)
    return {"preset": preset, "command": "; ".join(commands), "pdes": pdes}


def parse_run(text: str) -> tuple[Path, str | None]:
    directory, _, suffix = text.partition(":")
    return Path(directory), suffix or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="DIR or DIR:SUFFIX")
    parser.add_argument("--out", type=Path, required=True, help="the results file to write")
    args = parser.parse_args()
    merged = merge([parse_run(text) for text in args.runs])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=1) + "\n")
    for pde, entry in merged["pdes"].items():
        print(f"{pde}: {len(entry['rows'])} rows")


if __name__ == "__main__":
    main()
