"""``pirf solve``: forward and inverse PDE problems from partial observations.

Observe channels of the reference fields wholly or at random points (``--observe a=all``,
``--observe u=500``), sample one solution per field from the checkpoint's prior with
observation guidance (and optionally PDE guidance), write the solutions and report each
channel's relative L2 error and the residual (:mod:`pirf.solve`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pirf.cli._common import (
    AllowImportOpt,
    JsonOpt,
    ProgressReporter,
    ThreadsOpt,
    console,
    emit_json,
    use_threads,
)


def print_solution(summary: dict[str, Any]) -> None:
    """The errors and the settings as one readable table."""
    table = Table(title=f"{summary['pde']} solved from {', '.join(summary['observe'])}")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("checkpoint", f"{summary['checkpoint']} ({summary['checkpoint_kind']})")
    for channel, error in summary["relative_l2"].items():
        points = summary["observed_points"][channel]
        table.add_row(f"relative L2 {channel}", f"{error:.4g}  ({points} values observed)")
    table.add_row(
        "residual MSE",
        f"{summary['residual_mse']:.4g} (reference {summary['residual_mse_reference']:.3g})",
    )
    guidance = f"{','.join(summary['guidance'])}: zeta_obs {summary['zeta_obs']:g}"
    if "pde" in summary["guidance"]:
        guidance += f", zeta_pde {summary['zeta_pde']:g} (last {summary['pde_fraction']:.0%})"
    table.add_row("guidance", guidance)
    table.add_row(
        "sampling",
        f"{summary['n']} fields, {summary['steps']} steps, {summary['nfe_per_sample']} NFE + "
        f"{summary['backward_per_sample']} backward per field, {summary['seconds']:.1f} s",
    )
    table.add_row("file", summary["path"])
    console.print(table)


def solve(
    ckpt: Annotated[
        Path,
        typer.Option(
            "--ckpt", help="Prior: a checkpoint, or a run directory (its best/, else checkpoint/)."
        ),
    ],
    reference: Annotated[
        Path,
        typer.Option("--reference", help="Fields (.h5) whose first N are the problems."),
    ],
    observe: Annotated[
        list[str],
        typer.Option(
            "--observe",
            help="CHANNEL=all or CHANNEL=POINTS (random points, seeded); repeat per channel.",
            metavar="CHANNEL=all|POINTS",
        ),
    ],
    out_file: Annotated[
        Path, typer.Option("--out-file", help="Solutions file (.h5, dataset layout).")
    ],
    steps: Annotated[int, typer.Option("--steps", help="Sampler steps.")] = 20,
    n: Annotated[int, typer.Option("--n", help="Problems: the first N reference fields.")] = 16,
    guidance: Annotated[
        str, typer.Option("--guidance", help="obs, or obs,pde to add PDE guidance.")
    ] = "obs",
    zeta_obs: Annotated[
        float,
        typer.Option(
            "--zeta-obs", help="Observation guidance step (below 2; 1 removes the last misfit)."
        ),
    ] = 1.9,
    zeta_pde: Annotated[
        float | None,
        typer.Option(
            "--zeta-pde", help="PDE guidance step, with --guidance obs,pde [default: 1e-4]."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the observed points and the noise.")
    ] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch", help="Fields per micro-batch.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    allow_import: AllowImportOpt = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Solve forward or inverse problems from partial observations with the model as prior."""
    from pirf.solve.observe import parse_observations
    from pirf.solve.solver import solve as solve_problems

    observations = parse_observations(observe)
    use_threads(threads)
    with ProgressReporter(enabled=not as_json) as reporter:
        summary = solve_problems(
            ckpt,
            reference,
            observations,
            out_file,
            n=n,
            steps=steps,
            guidance=guidance.split(","),
            zeta_obs=zeta_obs,
            zeta_pde=zeta_pde,
            seed=seed,
            device=device,
            batch_size=batch_size,
            force=force,
            allow_import=allow_import,
            progress=reporter.callback("solving"),
        )
    if as_json:
        emit_json(summary)
        return
    print_solution(summary)
