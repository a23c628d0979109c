"""Readable forms of an evaluation report: a Markdown table and its rows."""

from __future__ import annotations

from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("residual_mse", "residual MSE"),
    ("residual_mse_median", "median"),
    ("residual_mse_p90", "p90"),
    ("residual_mae", "MAE"),
    ("consistency", "consistency"),
    ("mmd", "MMD"),
    ("spectrum_error", "spectrum err"),
    ("diversity", "diversity"),
)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (ground truth first) of the report's headline numbers."""
    extra = [
        key
        for key in report["ground_truth"]["headline"]
        if key not in {name for name, _ in COLUMNS} and key not in {"mmd_floor", "energy"}
    ]
    header = ["", "NFE", "s/sample", *(label for _, label in COLUMNS), *extra]
    rows = []
    floor = report["ground_truth"]["headline"]
    gt = ["ground truth", "-", "-", *(_format(floor.get(k)) for k, _ in COLUMNS)]
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
                *(_format(numbers.get(k)) for k, _ in COLUMNS),
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
