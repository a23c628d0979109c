"""``pirf pdes``: list the PDEs the registry knows."""

from __future__ import annotations

import typer
from rich.table import Table

import pirf.pdes
from pirf.cli._common import console, emit_json


def list_pdes(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """List the known PDEs (built-in, registered and from entry points) with their presets."""
    rows = pirf.pdes.describe()
    if as_json:
        emit_json({"pdes": rows})
        return
    table = Table(title="PDEs")
    for column in ("name", "channels", "presets", "description"):
        table.add_column(column)
    for row in rows:
        presets = ", ".join(f"{k} {v}^2" for k, v in row["presets"].items())
        table.add_row(row["name"], ", ".join(row["channels"]), presets, row["description"])
    console.print(table)
