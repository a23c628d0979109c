"""``pirf diagnose``: diagnostics of the method's assumptions on a model.

``pirf diagnose value-gap`` compares the one-step value ``r(D(x_sigma))`` that DPS-style
guidance uses with the reward the sampler actually reaches from ``x_sigma``
(:mod:`pirf.diagnostics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from pirf.cli._common import (
    AllowImportOpt,
    FigureFormatOpt,
    JsonOpt,
    ProgressReporter,
    ThreadsOpt,
    console,
    emit_json,
    use_threads,
)
from pirf.errors import PirfError, option

app = typer.Typer(help="Diagnostics of the method's assumptions on a model.", no_args_is_help=True)


def parse_sigmas(text: str) -> list[float]:
    """``"20,5,1"`` -> ``[20.0, 5.0, 1.0]``."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PirfError(
            f"{option('sigmas')} expects numbers like 20,1,0.05, got '{text}'"
        ) from None
    if not values:
        raise PirfError(f"{option('sigmas')} expects numbers like 20,1,0.05, got '{text}'")
    return values


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def print_value_gap(report: dict[str, Any]) -> None:
    """One table per kind of state; values shown as residuals (minus the reward)."""
    for kind, title in (("data", "data + noise"), ("trajectory", "model trajectories")):
        rows = [row for row in report["rows"] if row["kind"] == kind]
        table = Table(
            title=f"{report['pde']} value gap on {title} ({report['checkpoint_kind']} "
            f"{report['checkpoint']})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        columns = ["sigma", "-r(D(x))", "reached\nODE", "reached\nSDE", "ratio\nSDE"]
        columns += ["Spearman\nSDE", "Spearman\nODE"]
        if kind == "data":
            columns += ["-r(x0)", "ratio\nclean"]
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True)
        for row in rows:
            cells = [_number(row["sigma"])]
            cells += [_number(-row[key]) for key in ("one_step", "ode", "sde")]
            cells += [_number(row["ratio_sde"]), _number(row["spearman_sde"], 2)]
            cells += [_number(row["spearman_ode"], 2)]
            if kind == "data":
                cells += [_number(-row["clean"]), _number(row["ratio_clean"])]
            table.add_row(*cells)
        console.print(table)
    console.print(
        f"residual MSE (= -reward), means over {report['n']} states; reached: {report['steps']} "
        f"Heun steps from sigma to 0, SDE the mean of {report['runs']} churned runs; ratio: "
        "one-step residual / reached residual; Spearman: rank correlation of the one-step "
        "and the reached values across states.",
        style="dim",
    )
    console.print(f"files: {', '.join(report['files'])}")


def value_gap(
    ckpt: Annotated[
        Path,
        typer.Option(
            "--ckpt", help="Checkpoint, or a run directory (its best/, else its checkpoint/)."
        ),
    ],
    reference: Annotated[
        Path, typer.Option("--reference", help="Held-out data (.h5); its first N fields.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output directory (value-gap.json, value-gap.png or .pdf / .svg)."
        ),
    ],
    sigmas: Annotated[
        str, typer.Option("--sigmas", help="Noise levels, comma-separated.", metavar="LIST")
    ] = "20,5,1,0.2,0.05,0.01",
    n: Annotated[int, typer.Option("--n", help="States of each kind per noise level.")] = 16,
    runs: Annotated[int, typer.Option("--runs", help="Stochastic continuations per state.")] = 4,
    steps: Annotated[
        int, typer.Option("--steps", help="Heun steps of the trajectories and continuations.")
    ] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch", help="Trajectories per network call (default: automatic)."),
    ] = None,
    figure_format: FigureFormatOpt = "png",
    allow_import: AllowImportOpt = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How far the one-step value r(D(x_sigma)) is from the reward the sampler reaches."""
    from pirf.diagnostics.value_gap import diagnose_value_gap

    levels = parse_sigmas(sigmas)
    use_threads(threads)
    with ProgressReporter(enabled=not as_json) as reporter:
        report = diagnose_value_gap(
            ckpt,
            reference,
            out,
            sigmas=levels,
            n=n,
            runs=runs,
            steps=steps,
            seed=seed,
            device=device,
            batch_size=batch_size,
            figure_format=figure_format,
            allow_import=allow_import,
            progress=reporter.callback("value gap"),
        )
    if as_json:
        emit_json({key: value for key, value in report.items() if key != "per_state"})
        return
    print_value_gap(report)


app.command("value-gap")(value_gap)
