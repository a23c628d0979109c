"""``pirf export``: a checkpoint as a self-describing model directory (Hugging Face layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pirf.cli._common import JsonOpt, console, console_err, emit_json


def _measured(summary: dict[str, Any]) -> str:
    """The recorded residual of the exported weights, or that none was recorded."""
    residual = summary["residual_mse"]
    if not residual:
        return "not measured (the run recorded no evaluation of these weights)"
    values = ", ".join(f"{value:.4g} @ {budget} steps" for budget, value in residual.items())
    mmd = (summary["fidelity"] or {}).get("mmd")
    fidelity = "" if mmd is None else f"; MMD {mmd:.4g}"
    return f"{values}{fidelity} (iteration {summary['evaluation_iteration']})"


def print_summary(summary: dict[str, Any]) -> None:
    """What was exported from where, and what the card states about it."""
    table = Table(title=f"exported {summary['pde']} model", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("directory", summary["out"])
    table.add_row("from", f"{summary['checkpoint']} ({summary['checkpoint_kind']})")
    table.add_row(
        "weights",
        f"{summary['weights']} ({summary['parameters']:,} parameters), "
        f"sha256 {summary['weights_sha256'][:16]}...",
    )
    table.add_row("fine-tuned", "yes" if summary["finetuned"] else "no")
    table.add_row("residual MSE", _measured(summary))
    table.add_row("license", summary["license"] or "not stated (edit README.md before publishing)")
    files = summary["files"].items()
    table.add_row("files", ", ".join(f"{name} ({size:,} B)" for name, size in files))
    console.print(table)
    console.print(
        f"sample from it: pirf sample --ckpt {summary['out']} --n 16 --out-file samples.h5",
        highlight=False,
        soft_wrap=True,
    )


def export(
    ckpt: Annotated[
        Path,
        typer.Option(
            "--ckpt",
            help="Checkpoint directory, or a run directory (its best/, else its checkpoint/).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Directory to create: model.safetensors, config.json, README.md."
        ),
    ],
    license: Annotated[
        str | None,
        typer.Option(
            "--license",
            help="Licence identifier for the card's front matter (mit, apache-2.0, cc-by-4.0, "
            "...); default: left to you.",
            metavar="ID",
        ),
    ] = None,
    no_ema: Annotated[
        bool, typer.Option("--no-ema", help="Export the raw, not EMA, weights.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier export at --out.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a checkpoint as a model directory: weights, config.json, a model card.

    The Hugging Face hub layout (nothing is uploaded); pirf sample --ckpt loads it."""
    from pirf.checks import checkpoint_note
    from pirf.models.export import export_model

    summary = export_model(ckpt, out, force=force, license=license, ema=not no_ema)
    note = checkpoint_note(ckpt, Path(summary["checkpoint"]), summary["checkpoint_kind"])
    if note:
        console_err.print(note, highlight=False, soft_wrap=True)
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)
