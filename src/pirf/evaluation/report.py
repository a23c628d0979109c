"""Readable forms of an evaluation report: a Markdown table and its rows, and the names
that rows and figures take from the files they measured."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_PERIODIC = re.compile(r"^iter-\d+$")


def source_label(path: str | Path) -> str:
    """A readable name for what a row measured: the run, not the folder inside it.

    ``runs/darcy-pirf/checkpoint`` -> ``darcy-pirf``; ``runs/darcy-pirf/best`` ->
    ``darcy-pirf (best)``; ``runs/x/checkpoints/iter-0000040`` -> ``x (iter-0000040)``;
    ``samples.h5`` -> ``samples``.
    """
    path = Path(path)
    if path.name == "checkpoint" and path.parent.name:
        return path.parent.name
    if path.name == "best" and path.parent.name:
        return f"{path.parent.name} (best)"
    if _PERIODIC.match(path.name) and path.parent.name == "checkpoints":
        return f"{path.parent.parent.name or path.parent.name} ({path.name})"
    if path.suffix in (".h5", ".hdf5"):
        return path.stem
    return path.name


PHYSICS_COLUMNS: tuple[str, ...] = (
    "residual_mse",
    "residual_mse_median",
    "residual_mse_p90",
    "residual_mae",
    "consistency",
    "reference_mse",
    "reference_mse_median",
)
"""The physics block of the readable table; the rest is the fidelity block."""

COLUMNS: tuple[tuple[str, str], ...] = (
    ("residual_mse", "residual MSE"),
    ("residual_mse_median", "median"),
    ("residual_mse_p90", "p90"),
    ("residual_mae", "MAE"),
    ("consistency", "consistency"),
    ("reference_mse", "reference MSE"),
    ("reference_mse_median", "reference median"),
    ("mmd", "MMD"),
    ("spectrum_error", "spectrum err"),
    ("diversity", "diversity"),
)
OPTIONAL_COLUMNS = ("reference_mse", "reference_mse_median")
"""Columns shown only when some row measured them (``--residual reference``)."""


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _columns(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The table's columns: :data:`COLUMNS`, without optional ones that no row measured."""
    headlines = [report["ground_truth"]["headline"], *(row["headline"] for row in report["rows"])]
    return [
        (key, label)
        for key, label in COLUMNS
        if key not in OPTIONAL_COLUMNS or any(h.get(key) is not None for h in headlines)
    ]


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (ground truth first) of the report's headline numbers."""
    columns = _columns(report)
    extra = [
        key
        for key in report["ground_truth"]["headline"]
        if key not in {name for name, _ in COLUMNS} and key not in {"mmd_floor", "energy"}
    ]
    header = ["", "NFE", "s/sample", *(label for _, label in columns), *extra]
    rows = []
    floor = report["ground_truth"]["headline"]
    gt = ["ground truth", "-", "-", *(_format(floor.get(k)) for k, _ in columns)]
    gt += [_format(floor.get(k)) for k in extra]
    # The fidelity floor of the ground-truth row is the data-vs-data distance.
    rows.append(gt)
    for row in report["rows"]:
        numbers = row["headline"]
        rows.append(
            [
                row["label"],
                _format(row.get("nfe")),
                _format(row.get("seconds_per_sample")),
                *(_format(numbers.get(k)) for k, _ in columns),
                *(_format(numbers.get(k)) for k in extra),
            ]
        )
    return header, rows


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per model, ground truth first)."""
    header, rows = table_rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
