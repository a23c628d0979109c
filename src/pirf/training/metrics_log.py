"""``metrics.jsonl``: one JSON object per line, appended as a run goes.

The run loop writes a ``"kind": "train"`` line per ``log_every`` iterations
(:mod:`pirf.training.runloop` lists its keys); fine-tuning adds ``"kind": "eval"`` lines. A
tracker (:mod:`pirf.training.tracking`), if any, gets each line too, with nested values
under ``parent/child`` keys (``residual_mse/20``, ``fidelity/mmd``). A resumed run first drops the
lines after its checkpoint (and a line cut short by a crash), so the file always
describes one consistent history.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pirf.errors import PirfError


class MetricsLog:
    """Appends metric records to a JSON-lines file."""

    def __init__(self, path: Path, *, resume_from: int | None, tracker: Any = None) -> None:
        """Start the file anew (``resume_from=None``) or keep its records up to iteration
        ``resume_from``. ``tracker`` (:mod:`pirf.training.tracking`) gets every new line."""
        self.path = path
        self.tracker = tracker
        kept: list[str] = []
        if resume_from is not None and path.is_file():
            kept = [
                json.dumps(record)
                for record in read_metrics(path)
                if record.get("iteration", 0) <= resume_from
            ]
        try:
            path.write_text("".join(line + "\n" for line in kept))
        except OSError as error:
            raise PirfError(f"cannot write {path}: {error.strerror}") from None

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line, flush it to the file and hand it to the tracker, if
        any."""
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())
        if self.tracker is not None:
            self.tracker.log(record)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a metrics file (a torn last line is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


__all__ = ["MetricsLog", "read_metrics"]
