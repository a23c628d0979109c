"""``pirf sample``: draw samples from a checkpoint into a dataset-layout HDF5 file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pirf.cli._common import (
    AllowImportOpt,
    ProgressReporter,
    ThreadsOpt,
    console,
    console_err,
    emit_json,
    use_threads,
)


class Sampler(str, Enum):
    heun = "heun"
    euler = "euler"


def sample(
    ckpt: Annotated[
        Path,
        typer.Option(
            "--ckpt",
            help="Checkpoint directory, or a run directory (its best/, else its checkpoint/).",
        ),
    ],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")],
    out: Annotated[Path, typer.Option("--out-file", help="Output file (.h5).")],
    steps: Annotated[int, typer.Option("--steps", help="Sampler steps.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed (same noise for any model).")] = 0,
    sampler: Annotated[Sampler, typer.Option("--sampler", help="heun or euler.")] = Sampler.heun,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")
    ] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch", help="Samples per micro-batch (default: automatic).")
    ] = None,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16/--no-bf16", help="bf16 network in early steps (CUDA only).", metavar=""
        ),
    ] = True,
    fp32_steps: Annotated[
        int, typer.Option("--fp32-steps", help="With --bf16: last steps run in fp32.")
    ] = 2,
    raw: Annotated[
        bool, typer.Option("--raw", help="Keep raw values (no snapping, e.g. Darcy's a).")
    ] = False,
    no_ema: Annotated[
        bool, typer.Option("--no-ema", help="Use the raw, not EMA, weights.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    allow_import: AllowImportOpt = False,
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Sample N fields from a checkpoint with the deterministic EDM sampler."""
    from pirf.checks import checkpoint_note
    from pirf.sampling.from_checkpoint import sample_to_file

    use_threads(threads)
    with ProgressReporter(enabled=not as_json) as reporter:
        summary = sample_to_file(
            ckpt,
            out,
            n=n,
            seed=seed,
            steps=steps,
            method=sampler.value,
            device=device,
            batch_size=batch_size,
            bf16=bf16,
            fp32_steps=fp32_steps,
            snap=not raw,
            ema=not no_ema,
            force=force,
            allow_import=allow_import,
            progress=reporter.callback("sampling"),
        )
    note = checkpoint_note(ckpt, Path(summary["checkpoint"]), summary["checkpoint_kind"])
    if note:
        console_err.print(note, highlight=False, soft_wrap=True)
    if as_json:
        emit_json(summary)
        return
    table = Table(title=f"samples of {summary['pde']}", show_header=False)
    table.add_row("checkpoint", f"{summary['checkpoint']} ({summary['checkpoint_kind']})")
    for key in ("path", "n", "shape", "sampler", "steps", "nfe_per_sample", "seed"):
        table.add_row(key, str(summary[key]))
    table.add_row("seconds", f"{summary['seconds']:.2f} ({summary['samples_per_s']:.1f} samples/s)")
    console.print(table)
