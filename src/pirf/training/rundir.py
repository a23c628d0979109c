"""The layout of a run directory and its periodic checkpoints.

::

    OUT/
      checkpoint/              the final model: weights + EMA + metadata (what later
                               stages read), written when the run completes
      checkpoints/iter-0000250 periodic checkpoints (weights, EMA, optimizer, counters);
                               --resume continues from the newest
      metrics.jsonl            training curve (pirf.training.metrics_log)
      figures/                 EMA-model samples beside their residual maps
      summary.json             the final summary

Periodic checkpoints get new names; older ones are removed only after a newer one is
complete (renamed out of the way first, then deleted), so a process killed at any moment
leaves at least one intact checkpoint under a checkpoint name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from pirf.errors import PirfError
from pirf.models.checkpoint import INFO_FILE

FINAL = "checkpoint"
PERIODIC = "checkpoints"
METRICS = "metrics.jsonl"
FIGURES = "figures"
SUMMARY = "summary.json"
_NAME = re.compile(r"^iter-(\d+)$")


def periodic_name(iteration: int) -> str:
    return f"iter-{iteration:07d}"


def periodic_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the complete periodic checkpoints, oldest first."""
    folder = out / PERIODIC
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and (entry / INFO_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest periodic checkpoint of a run, if any."""
    found = periodic_checkpoints(out)
    return found[-1][1] if found else None


def prepare(out: Path, *, resume: bool, create: bool = True) -> Path | None:
    """Check (and with ``create``, make) the run directory; returns the checkpoint to resume
    from. A new run refuses a directory that already holds one; ``resume`` needs a
    checkpoint. The checks only read, so every process of a run can make them.
    """
    if out.exists() and not out.is_dir():
        raise PirfError(f"--out {out} is a file; give a directory for the run")
    latest = latest_checkpoint(out) if out.is_dir() else None
    if resume:
        if latest is None:
            raise PirfError(
                f"nothing to resume in {out}: it has no checkpoint under {PERIODIC}/; "
                "start the run without --resume"
            )
        return latest
    if latest is not None or (out / FINAL).exists():
        raise PirfError(
            f"{out} already holds a training run; pass --resume to continue it "
            "or choose another --out"
        )
    if not create:
        return None
    try:
        (out / PERIODIC).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PirfError(f"cannot create the run directory {out}: {error.strerror}") from None
    return None


def prune(out: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` periodic checkpoints.

    Also deletes hidden leftovers in the folder (staging directories of a save killed
    midway, earlier removals); call it only while no checkpoint is being written.
    """
    folder = out / PERIODIC
    for _, path in periodic_checkpoints(out)[:-keep]:
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=folder))
        os.replace(path, trash / path.name)
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)


__all__ = [
    "FIGURES",
    "FINAL",
    "METRICS",
    "PERIODIC",
    "SUMMARY",
    "latest_checkpoint",
    "periodic_checkpoints",
    "periodic_name",
    "prepare",
    "prune",
]
