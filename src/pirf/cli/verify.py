"""``pirf data verify``: generate a small dataset of every benchmark and verify it.

Each PDE's own solver makes the data; the table shows the ground truth's residual floor,
its separation from slightly perturbed fields, and solver consistency: the evidence that
the residual every later stage optimises and reports is the solver's own equation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pirf.cli._common import ProgressReporter, ThreadsOpt, console, emit_json, use_threads
from pirf.errors import PirfError


def verify(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory the generated files go into.")
    ] = Path("verify-output"),
    n: Annotated[int, typer.Option("--n", help="Samples per PDE.")] = 64,
    preset: Annotated[str, typer.Option("--preset", help="Size preset of every PDE.")] = "tiny",
    pdes: Annotated[
        str, typer.Option("--pdes", help="Comma-separated PDE names, or 'all'.")
    ] = "all",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated data.")] = 0,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")
    ] = "auto",
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Generate a small dataset of each PDE and print its verification table."""
    import pirf.data
    import pirf.pdes
    from pirf.checks import check_device, check_output_dir
    from pirf.data.generate import DEFAULT_BATCH_SIZE, check_request, resolve_pde
    from pirf.verification import NOISE_LEVEL, verify_file

    use_threads(threads)
    names = pirf.pdes.names() if pdes == "all" else [p.strip() for p in pdes.split(",")]
    if n <= 0:
        raise PirfError(f"--n must be positive, got {n}")
    for name in names:  # every request is checked before the first file is made
        pde, resolution, _ = resolve_pde(name, preset=preset)
        check_request(pde, n, resolution, seed, "train", DEFAULT_BATCH_SIZE)
    check_device(device)
    check_output_dir(out_dir, "out_dir", flag="--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    with ProgressReporter(enabled=not as_json) as reporter:
        for name in names:
            summary = pirf.data.generate(
                name,
                n,
                None,
                seed,
                out_dir / f"{name}-{preset}.h5",
                preset=preset,
                device=device,
                force=True,
                progress=reporter.callback(name),
            )
            row = verify_file(summary.path)
            row["generate_seconds"] = summary.seconds
            row["file"] = str(summary.path)
            rows.append(row)
    payload = {"preset": preset, "seed": seed, "pdes": rows, "seconds": time.perf_counter() - start}
    if as_json:
        emit_json(payload)
        return
    table = Table(title=f"Ground-truth verification ({preset} preset, {n} samples each)")
    for column in (
        "PDE",
        "shape",
        "gen. s",
        "residual MSE",
        "p90",
        "noisy MSE",
        "ratio",
        "consistency",
    ):
        table.add_column(column, justify="left" if column == "PDE" else "right")
    for row in rows:
        consistency = row["consistency_rel_l2"]
        table.add_row(
            row["pde"],
            "x".join(str(s) for s in row["shape"][1:]),
            f"{row['generate_seconds']:.2f}",
            f"{row['residual']['mse']:.3g}",
            f"{row['residual']['mse_p90']:.3g}",
            f"{row['perturbed_residual_mse']:.3g}",
            f"{row['floor_to_perturbed']:.2g}",
            "-" if consistency is None else f"{consistency:.2g}",
        )
    console.print(table)
    console.print(
        "residual MSE: mean over samples of the squared residual of the stored float32 fields "
        "(physical units); noisy MSE: the same with white noise of "
        f"{NOISE_LEVEL:g} x each channel's std added; ratio: residual MSE / noisy MSE; "
        "consistency: relative L2 between the stored solution and a re-solve from the stored "
        "inputs.",
        style="dim",
    )
    console.print(f"files in {out_dir}/, {payload['seconds']:.1f} s in all")
