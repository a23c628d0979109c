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
leaves at least one intact checkpoint under a checkpoint name. What such a kill leaves
besides (hidden staging folders of a half-written save) is removed when the run resumes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option
from pirf.models.checkpoint import INFO_FILE, read_checkpoint_info

FINAL = "checkpoint"
PERIODIC = "checkpoints"
METRICS = "metrics.jsonl"
FIGURES = "figures"
SUMMARY = "summary.json"
CONFIG = "config.toml"
NOT_REPRODUCED = ("resume", "stop_at", "progress", "report_only")
"""Settings of one invocation that ``config.toml`` leaves out: reading it back starts the
same run afresh."""
_NAME = re.compile(r"^iter-(\d+)$")
_STAGING = re.compile(r"^\.(?:.+\.(?:tmp|old)|trash)-[a-z0-9_]+$")
"""Hidden folders of a save in progress: ``.NAME.tmp-*`` (a checkpoint being written),
``.NAME.old-*`` (the one it replaces) and ``.trash-*`` (a pruned periodic checkpoint)."""


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
        raise PirfError(f"{option('out')} {out} is a file; give a directory for the run")
    latest = latest_checkpoint(out) if out.is_dir() else None
    if resume:
        if latest is None:
            raise PirfError(
                f"nothing to resume in {out}: it has no checkpoint under {PERIODIC}/; "
                f"start the run without {option('resume', True)}"
            )
        if create:
            remove_staging(out)
        return latest
    if latest is not None or (out / FINAL).exists():
        raise PirfError(
            f"{out} already holds a training run; pass {option('resume', True)} to continue it "
            f"or choose another {option('out')} directory"
        )
    if not create:
        return None
    try:
        (out / PERIODIC).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PirfError(f"cannot create the run directory {out}: {error.strerror}") from None
    return None


@dataclass(frozen=True)
class FinishedRun:
    """A run whose final checkpoint already holds everything that was asked of it."""

    iterations: int
    target: int
    stopped: dict[str, Any] | None
    """``{"iteration", "reason"}`` when a guard ended the run early."""
    summary: dict[str, Any] | None
    """The run's ``summary.json`` as it was written when it finished (None if missing)."""

    def message(self) -> str:
        """The one line that says so."""
        if self.stopped is not None:
            return (
                f"already complete (stopped at iteration {self.stopped.get('iteration')} of "
                f"{self.target}: {self.stopped.get('reason')}); nothing to do"
            )
        return f"already complete ({self.iterations}/{self.target} iterations); nothing to do"

    def result(self) -> dict[str, Any]:
        """What the run's API function returns for it: the stored summary, marked."""
        return {**(self.summary or {}), "already_complete": True, "message": self.message()}


def finished_run(out: Path, iters: int | None = None) -> FinishedRun | None:
    """The finished run in ``out``, if resuming it would have nothing to do.

    A run is finished when its final checkpoint exists and it either reached ``iters``
    (default: its own target) or was stopped by a guard. Only reads; a resumed run that
    is finished must leave every file as it is.
    """
    final = out / FINAL
    if not (final / INFO_FILE).is_file():
        return None
    info = read_checkpoint_info(final)
    done = int(info.counters.get("iteration", 0))
    target = int(info.training.get("iters", done))
    stopped = info.extra.get("finetune", {}).get("state", {}).get("stopped")
    if done < (target if iters is None else iters) and stopped is None:
        return None
    summary = None
    if (out / SUMMARY).is_file():
        try:
            summary = json.loads((out / SUMMARY).read_text())
        except (OSError, ValueError):
            summary = None
    return FinishedRun(done, target, stopped, summary)


def write_config(out: Path, config: Any, command: str) -> Path:
    """``OUT/config.toml``: the run's resolved settings, which ``--config`` reads back to
    reproduce the run (bitwise on the CPU). Written atomically; returns its path."""
    from pirf.settings import flat, to_nested, to_toml, with_values

    names = set(flat(config))
    plain = with_values(config, dict.fromkeys(n for n in NOT_REPRODUCED if n in names))
    text = to_toml(
        to_nested(plain),
        header=f"The resolved configuration of this run ({command}).\n"
        f"Reproduce it with: pirf {command} --config config.toml --out NEW_DIRECTORY",
    )
    path = out / CONFIG
    staging = out / f".{CONFIG}.tmp"
    staging.write_text(text)
    os.replace(staging, path)
    return path


def remove_staging(out: Path) -> list[Path]:
    """Delete the staging folders that a process killed while saving left in the run
    directory and its periodic-checkpoint folder; returns what was removed. Call it only
    while no checkpoint of the run is being written (when the run resumes)."""
    removed = []
    for folder in (out, out / PERIODIC):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and _STAGING.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


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
    "CONFIG",
    "FIGURES",
    "FINAL",
    "METRICS",
    "PERIODIC",
    "SUMMARY",
    "FinishedRun",
    "finished_run",
    "latest_checkpoint",
    "periodic_checkpoints",
    "periodic_name",
    "prepare",
    "prune",
    "remove_staging",
    "write_config",
]
