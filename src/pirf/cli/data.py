"""``pirf data``: generate and check HDF5 datasets (filled in by the data module)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Generate and check PDE datasets (HDF5).", no_args_is_help=True)
