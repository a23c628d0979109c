"""``pirf train``: train (or resume) a base EDM model on a dataset file.

A thin wrapper over :func:`pirf.training.train`: parse options, show progress on stderr,
print the summary as a table (or one JSON object with ``--json``). Several GPUs:
``torchrun --nproc-per-node N --no-python pirf train ...``.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from pirf.cli._common import RUN_EXTRAS, console, emit_json, use_threads
from pirf.cli.generated import command
from pirf.training.config import DEFAULTS, PRESET_DEFAULTS, TrainConfig


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
    if summary.get("tracker"):
        rows.append(("tracker", summary["tracker"]))
    if summary["figures"]:
        rows.append(("last figure", summary["figures"][-1]))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if not summary["completed"]:
        console.print("stopped early; continue with --resume", highlight=False)


def preset_notes() -> dict[str, str]:
    """Per setting with a per-preset default, the presets' values."""

    def shown(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    names = sorted({name for values in PRESET_DEFAULTS.values() for name in values})
    return {
        name: ", ".join(
            f"{preset} {shown(values[name])}" for preset, values in PRESET_DEFAULTS.items()
        )
        for name in names
    }


def _run(config: Any, *, threads: int | None = None, as_json: bool = False) -> None:
    from pirf.settings import with_values
    from pirf.training import train as run_training

    use_threads(threads)
    if as_json:
        config = with_values(config, {"progress": False})
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


train = command(
    TrainConfig,
    DEFAULTS,
    _run,
    extra=RUN_EXTRAS,
    doc="Train a base EDM model on a dataset (EMA, checkpoints, figures, resumable). "
    "Settings left out take the preset's defaults (docs/training.md).",
    notes=preset_notes(),
)
