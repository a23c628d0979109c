"""``pirf train``: train (or resume) a base EDM model on a dataset file.

A thin wrapper over :func:`pirf.training.train`: parse options, show progress on stderr,
print the summary as a table (or one JSON object with ``--json``). Several GPUs:
``torchrun --nproc-per-node N --no-python pirf train ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pirf.cli._common import ThreadsOpt, console, emit_json, use_threads
from pirf.errors import PirfError
from pirf.training import TrainConfig
from pirf.training import train as run_training


def parse_overrides(items: list[str] | None) -> dict[str, Any] | None:
    """``["key=value", ...]`` -> dict (values parsed as JSON when they are); None if empty."""
    if not items:
        return None
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PirfError(f"--model-option expects key=value, got '{item}'")
        try:
            overrides[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key.strip()] = raw
    return overrides


def print_summary(summary: dict[str, Any]) -> None:
    """The run's summary as a two-column table."""
    table = Table(title="Training", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    loss = summary["final_loss"]
    rows = [
        ("iterations", f"{summary['iterations']} / {summary['target_iterations']}"),
        (
            "final loss",
            "-"
            if loss is None
            else f"{loss:.5f} (mean of the last {summary['final_loss_iterations']} iterations, "
            "the last line of metrics.jsonl)",
        ),
        ("seconds", f"{summary['seconds']:.1f} (run total {summary['total_seconds']:.1f})"),
        ("samples/s", f"{summary['samples_per_s']:.1f}"),
        ("parameters", f"{summary['parameters']:,}"),
        ("preset / batch", f"{summary['preset']} / {summary['batch']}"),
        ("device", f"{summary['device']} x {summary['world_size']}"),
        ("checkpoint", summary["checkpoint"]),
        ("metrics", summary["metrics"]),
    ]
    if summary["figures"]:
        rows.append(("last figure", summary["figures"][-1]))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if not summary["completed"]:
        console.print("stopped early; continue with --resume", highlight=False)


def train(
    data: Annotated[Path, typer.Option("--data", help="Training set (pirf HDF5 file).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory.")],
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Network size: tiny, small or paper. Required to start a run; "
            "--resume takes the run's own.",
        ),
    ] = None,
    iters: Annotated[
        int | None, typer.Option("--iters", help="Total iterations; default: the preset's.")
    ] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="Global batch size; default: the preset's.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate; default: the preset's.")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option("--warmup", help="Warm-up iterations; default 5% of --iters.")
    ] = None,
    ema_halflife: Annotated[
        float | None,
        typer.Option("--ema-halflife", help="EMA half-life in samples; default: the preset's."),
    ] = None,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", help="Gradient-norm clip (0: off); 1.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the run; 0.")] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", help="U-Net setting key=value (JSON value); repeat."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")] = "auto",
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Iterations between checkpoints.")
    ] = None,
    figure_every: Annotated[
        int | None,
        typer.Option("--figure-every", help="Samples between preview figures (0: none)."),
    ] = None,
    log_every: Annotated[
        int, typer.Option("--log-every", help="Iterations per metrics line.")
    ] = 10,
    stop_at: Annotated[
        int | None,
        typer.Option("--stop-at", help="Stop this invocation after this iteration."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")
    ] = False,
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train a base EDM model on a dataset (EMA, checkpoints, figures, resumable)."""
    use_threads(threads)
    config = TrainConfig(
        data=data,
        out=out,
        preset=preset,
        iters=iters,
        batch=batch,
        lr=lr,
        warmup=warmup,
        ema_halflife=ema_halflife,
        grad_clip=grad_clip,
        seed=seed,
        model_overrides=parse_overrides(model_option),
        device=device,
        checkpoint_every=checkpoint_every,
        figure_every=figure_every,
        log_every=log_every,
        stop_at=stop_at,
        resume=resume,
        progress=not as_json,
    )
    summary = run_training(config)
    if summary.get("already_complete"):
        if as_json:
            emit_json(summary)
        else:
            console.print(summary["message"], highlight=False)
        return
    if summary["rank"] != 0:  # under torchrun, rank 0 reports
        return
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)
