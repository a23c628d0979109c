"""Training progress on stderr: a rich bar on a terminal, a line per ~5% otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """Shows iterations done, the latest loss and the throughput; silent when disabled."""

    def __init__(self, *, enabled: bool, start: int, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._console = Console(stderr=True)
        self._bar: Progress | None = None
        self._task = None
        self._start = start
        self._next_line = start

    def __enter__(self) -> TrainingProgress:
        if self.enabled and self._console.is_terminal:
            self._bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]} samples/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "train", total=self.total, completed=self._start, loss="-", speed="-"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, iteration: int, loss: float, samples_per_s: float) -> None:
        """Report that ``iteration`` steps are done."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(
                self._task, completed=iteration, loss=f"{loss:.4f}", speed=f"{samples_per_s:.0f}"
            )
            return
        if iteration >= self._next_line or iteration == self.total:
            self._console.print(
                f"train: {iteration}/{self.total} loss {loss:.4f} {samples_per_s:.0f} samples/s",
                highlight=False,
            )
            self._next_line = iteration + max(1, self.total // 20)

    def message(self, text: str) -> None:
        """A line above the bar (e.g. a checkpoint or figure written)."""
        if self.enabled:
            self._console.print(text, highlight=False)


__all__ = ["TrainingProgress"]
