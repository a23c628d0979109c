"""``pirf evaluate``: the evaluation protocol on a samples file or a checkpoint."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from pirf.cli._common import (
    AllowImportOpt,
    FigureFormatOpt,
    ProgressReporter,
    ThreadsOpt,
    console,
    console_err,
    emit_json,
    use_threads,
)
from pirf.errors import PirfError
from pirf.evaluation.report import COLUMNS, PHYSICS_COLUMNS, markdown_table, table_rows


class Residual(str, Enum):
    own = "own"
    reference = "reference"


def _steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PirfError(f"--steps expects integers like 20,40,80, got '{text}'") from None
    if not steps or min(steps) <= 0:
        raise PirfError(f"--steps expects positive integers like 20,40,80, got '{text}'")
    return steps


def _header(label: str) -> str:
    """A column header stacked on two lines, so the table fits 80 columns."""
    stacked = {
        "residual MSE": "residual\nMSE",
        "spectrum err": "spectrum\nerror",
        "consistency": "consis-\ntency",
        "reference MSE": "ref.\nMSE",
        "reference median": "ref.\nmedian",
        "diversity": "diver-\nsity",
        "s/sample": "s /\nsample",
    }
    return stacked.get(label, label.replace(" ", "\n", 1))


def print_report(report: dict) -> None:
    """The report as two tables that each fit 80 columns: physics, then fidelity and the
    sampling cost."""
    header, rows = table_rows(report)
    physics = {label for key, label in COLUMNS if key in PHYSICS_COLUMNS}
    blocks = (
        ("physics", [0, *(i for i, c in enumerate(header) if c in physics)]),
        (
            "fidelity and cost",
            [0, *(i for i, c in enumerate(header[3:], 3) if c not in physics), 1, 2],
        ),
    )
    for name, columns in blocks:
        title = f"{report['pde']} {name}" + (
            f" against {report['reference']}" if name == "physics" else ""
        )
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for index in columns:
            label = header[index]
            if index == 0:
                table.add_column("model", overflow="fold", ratio=1, min_width=12)
            else:
                table.add_column(_header(label), justify="right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[i] for i in columns))
        console.print(table)
    console.print(
        "residual: physical units, over samples (mean, median, p90); consistency: relative L2 "
        "distance to a re-solve; MMD: joint feature MMD to held-out data (ground-truth row: "
        "the data-vs-data floor); diversity: mean pairwise distance relative to data.",
        style="dim",
    )
    if any("reference_residual" in row["metrics"]["physics"] for row in report["rows"]):
        console.print(
            "ref.: the residual as the paper's code defines it (every pixel, its padding and "
            "spacing; docs/evaluation.md), with its own ground-truth floor in the first row.",
            style="dim",
        )


def evaluate(
    reference: Annotated[Path, typer.Option("--reference", help="Held-out data (.h5).")],
    samples: Annotated[
        list[Path] | None, typer.Option("--samples", help="Samples file(s) to evaluate.")
    ] = None,
    ckpt: Annotated[
        Path | None,
        typer.Option(
            "--ckpt",
            help="Or: sample this checkpoint (or run directory: its best/, else its "
            "checkpoint/) and evaluate.",
        ),
    ] = None,
    steps: Annotated[str, typer.Option("--steps", help="With --ckpt: step counts.")] = "20,40,80",
    n: Annotated[int, typer.Option("--n", help="With --ckpt: samples per step count.")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Noise and split seed.")] = 0,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")
    ] = "auto",
    no_consistency: Annotated[
        bool, typer.Option("--no-consistency", help="Skip the solver re-solve.")
    ] = False,
    residual: Annotated[
        Residual,
        typer.Option(
            "--residual",
            help="own: pirf's residual; reference: also the paper code's definition, with "
            "its own ground-truth floor.",
        ),
    ] = Residual.own,
    figures: Annotated[
        Path | None,
        typer.Option(
            "--figures", help="Write sample grids, the residual histogram and spectra here."
        ),
    ] = None,
    figure_format: FigureFormatOpt = "png",
    out: Annotated[
        Path | None, typer.Option("--out-file", help="Also write the report (JSON) here.")
    ] = None,
    allow_import: AllowImportOpt = False,
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Residual, solver consistency and data fidelity against held-out data, with floors."""
    from pirf.atomic import atomic_output
    from pirf.checks import check_output_file, checkpoint_note
    from pirf.evaluation.figures import check_figure_format
    from pirf.evaluation.protocol import evaluate_checkpoint, evaluate_files

    use_threads(threads)
    check_figure_format(figure_format)
    if (samples is None) == (ckpt is None):
        raise PirfError("give either --samples FILE or --ckpt DIR (not both)")
    if out is not None:  # written after the evaluation: refused now if it cannot be
        if any(out.resolve() == Path(p).resolve() for p in [reference, *(samples or [])]):
            raise PirfError(
                f"--out {out} is an input of this evaluation; write the report to another file"
            )
        check_output_file(out, "out", force=True, flag="--out-file")
    if ckpt is not None:
        with ProgressReporter(enabled=not as_json) as reporter:
            report = evaluate_checkpoint(
                ckpt,
                reference,
                steps=_steps(steps),
                n=n,
                seed=seed,
                device=device,
                consistency=not no_consistency,
                reference_residual=residual is Residual.reference,
                figures=figures,
                figure_format=figure_format,
                progress=reporter.callback,
                allow_import=allow_import,
            )
    else:
        report = evaluate_files(
            samples,
            reference,
            consistency=not no_consistency,
            reference_residual=residual is Residual.reference,
            seed=seed,
            figures=figures,
            figure_format=figure_format,
        )
    report["markdown"] = markdown_table(report)
    if ckpt is not None:
        kind = report["checkpoint_kind"]
        note = checkpoint_note(ckpt, Path(report["checkpoint"]), kind)
        if note:
            console_err.print(note, highlight=False, soft_wrap=True)
    if out is not None:
        with atomic_output(out, force=True) as temporary:
            temporary.write_text(json.dumps(report, indent=1))
    if as_json:
        emit_json(report)
        return
    print_report(report)
    if report.get("figures"):
        console.print(f"figures: {', '.join(report['figures'])}")
