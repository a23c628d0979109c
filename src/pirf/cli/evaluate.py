"""``pirf evaluate``: the evaluation protocol on a samples file or a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pirf.cli._common import console, emit_json
from pirf.data.atomic import atomic_output
from pirf.errors import PirfError
from pirf.evaluation.protocol import evaluate_checkpoint, evaluate_files
from pirf.evaluation.report import markdown_table, table_rows


def _steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PirfError(f"--steps expects integers like 20,40,80, got '{text}'") from None
    if not steps or min(steps) <= 0:
        raise PirfError(f"--steps expects positive integers like 20,40,80, got '{text}'")
    return steps


def evaluate(
    reference: Annotated[Path, typer.Option("--reference", help="Held-out data (.h5).")],
    samples: Annotated[
        list[Path] | None, typer.Option("--samples", help="Samples file(s) to evaluate.")
    ] = None,
    ckpt: Annotated[
        Path | None, typer.Option("--ckpt", help="Or: sample this checkpoint and evaluate.")
    ] = None,
    steps: Annotated[str, typer.Option("--steps", help="With --ckpt: step counts.")] = "20,40,80",
    n: Annotated[int, typer.Option("--n", help="With --ckpt: samples per step count.")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Noise and split seed.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    no_consistency: Annotated[
        bool, typer.Option("--no-consistency", help="Skip the solver re-solve.")
    ] = False,
    figures: Annotated[
        Path | None, typer.Option("--figures", help="Write sample grids and spectra here.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the report (JSON) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Residual, solver consistency and data fidelity against held-out data, with floors."""
    if (samples is None) == (ckpt is None):
        raise PirfError("give either --samples FILE or --ckpt DIR (not both)")
    if ckpt is not None:
        report = evaluate_checkpoint(
            ckpt,
            reference,
            steps=_steps(steps),
            n=n,
            seed=seed,
            device=device,
            consistency=not no_consistency,
            figures=figures,
        )
    else:
        report = evaluate_files(
            samples, reference, consistency=not no_consistency, seed=seed, figures=figures
        )
    report["markdown"] = markdown_table(report)
    if out is not None:
        with atomic_output(out, force=True) as temporary:
            temporary.write_text(json.dumps(report, indent=1))
    if as_json:
        emit_json(report)
        return
    header, rows = table_rows(report)
    table = Table(title=f"{report['pde']}: evaluation against {report['reference']}")
    for column in header:
        table.add_column(column, justify="left" if column == "" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        "residual: physical units, over samples (mean, median, p90); MMD: joint feature MMD to "
        "held-out data (ground-truth row: the data-vs-data floor); diversity: mean pairwise "
        "distance relative to data.",
        style="dim",
    )
    if report.get("figures"):
        console.print(f"figures: {', '.join(report['figures'])}")
