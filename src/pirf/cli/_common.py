"""Shared helpers of the CLI commands: consoles, JSON output, progress."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pirf.settings import FIGURE_FORMAT_HELP, FIGURE_FORMAT_METAVAR

console = Console(stderr=False)
console_err = Console(stderr=True)
for _console in (console, console_err):
    if not _console.is_terminal:  # pipes and logs: wide enough that tables do not fold
        _console.width = max(_console.width, 120)


ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="CPU threads; default: one per core that other work leaves free "
        "(OMP_NUM_THREADS if set).",
        metavar="INT",
    ),
]


ALLOW_IMPORT_HELP = (
    "Let the checkpoint import and run the Python factory its architecture names (a "
    "wrapped network's module:callable); only for checkpoints you trust."
)
"""Help of ``--allow-import``, the same in every command that loads a model."""

AllowImportOpt = Annotated[bool, typer.Option("--allow-import", help=ALLOW_IMPORT_HELP, metavar="")]


FigureFormatOpt = Annotated[
    str,
    typer.Option("--figure-format", help=FIGURE_FORMAT_HELP, metavar=FIGURE_FORMAT_METAVAR),
]
"""``--figure-format`` of the commands whose options are not generated from a
configuration (which declare it as a setting, with the same help)."""


JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout.", metavar="")
]


RUN_EXTRAS = [
    inspect.Parameter(
        "threads", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ThreadsOpt
    ),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
]
"""``--threads`` and ``--json``: the options every command generated from a configuration
(train, finetune, bench) adds to its settings."""


def use_threads(threads: int | None) -> int:
    """Apply ``--threads`` (first thing a computing command does; see pirf.threads)."""
    from pirf.threads import use_threads as apply

    return apply(threads)


def emit_json(payload: dict[str, Any]) -> None:
    """Write one JSON object to stdout (nothing else goes to stdout with ``--json``)."""
    sys.stdout.write(json.dumps(payload, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()


ProgressFn = Callable[[int, int], None]


class ProgressReporter:
    """Progress on stderr: a rich bar on a terminal, a line per ~10% otherwise, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None

    def __enter__(self) -> ProgressReporter:
        if self.enabled and console_err.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("samples"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console_err,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def callback(self, label: str) -> ProgressFn | None:
        """A ``progress(done, total)`` function for one file, or None when disabled."""
        if not self.enabled:
            return None
        if self._bar is not None:
            bar = self._bar
            task = bar.add_task(label, total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)
        next_report = [0.0]

        def report(done: int, total: int) -> None:
            if done >= total or done / total >= next_report[0]:
                console_err.print(f"{label}: {done}/{total} samples", highlight=False)
                next_report[0] = done / total + 0.1

        return report
