"""Checks the command line makes before a command's body runs, on its arguments by name.

Most options go straight to an API function that checks them first (:mod:`pirf.checks`).
These are the options a command handles itself: the demo's output directory and device,
the bench's ``--results-json`` file, and a run directory given as ``--ckpt`` to
``pirf finetune`` (the command reads the checkpoint for its recipe before the API sees
it). Each function takes the command's arguments, may replace a value, and returns a line
for stderr once the command has finished (or None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pirf.checks import (
    check_device,
    check_output_dir,
    check_output_file,
    checkpoint_note,
    resolve_checkpoint,
)
from pirf.errors import PirfError


def demo(arguments: dict[str, Any]) -> str | None:
    """The demo's output directory, device and counts, and the shipped base model."""
    from pirf.assets import shipped_checkpoint
    from pirf.cli.demo import BASE

    if arguments["iters"] <= 0 or arguments["n_eval"] < 4:
        raise PirfError("--iters must be positive and --n-eval at least 4")
    check_device(arguments["device"])
    check_output_dir(arguments["out_dir"], "out_dir")
    if not arguments["from_scratch"]:
        shipped_checkpoint(BASE)
    return None


def finetune(arguments: dict[str, Any]) -> str | None:
    """A run directory as ``--ckpt`` stands for its best or final checkpoint."""
    given = Path(arguments["ckpt"])
    path, kind = resolve_checkpoint(given)
    arguments["ckpt"] = path
    return checkpoint_note(given, path, kind)


def bench(arguments: dict[str, Any]) -> str | None:
    """``--results-json`` can be written (it is written after the whole bench)."""
    if arguments["results_json"] is not None:
        check_output_file(arguments["results_json"], "results_json", force=True)
    return None


__all__ = ["bench", "demo", "finetune"]
