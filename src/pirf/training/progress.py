"""Progress of an iterative run on stderr: a rich bar on a terminal, a line per ~5% otherwise.

Every line names its stage (``train``, ``finetune``, ``pidm``, ...), the iterations done,
the loss as the metrics log records it (the mean over the current log interval), the
speed as seconds per iteration (or iterations per second when faster than one a second)
and the time left. The speed is that of this invocation: evaluations, checkpoints and
figures are part of it, so the time left includes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def format_rate(seconds_per_iteration: float | None) -> str:
    """``2.95 s/it`` or ``14.2 it/s``; ``-`` before the first iteration."""
    if seconds_per_iteration is None or seconds_per_iteration <= 0:
        return "-"
    if seconds_per_iteration >= 1:
        return f"{seconds_per_iteration:.2f} s/it"
    return f"{1 / seconds_per_iteration:.1f} it/s"


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m47s`` or ``12s``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class TrainingProgress:
    """Iterations done, the loss, seconds per iteration and the time left; silent when
    disabled. ``label`` names the stage."""

    def __init__(
        self,
        *,
        enabled: bool,
        start: int,
        total: int,
        label: str = "train",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self._clock = clock
        self._console = Console(stderr=True)
        self._bar: Progress | None = None
        self._task = None
        self._start = start
        self._began = clock()
        self._next_line = start

    def __enter__(self) -> TrainingProgress:
        self._began = self._clock()
        if self.enabled and self._console.is_terminal:
            self._bar = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=self._console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                self.label, total=self.total, completed=self._start, loss="-", rate="-", eta="-"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def restart(self) -> None:
        """Start timing now (after set-up work that the rate should not include)."""
        self._began = self._clock()

    def timing(self, iteration: int) -> tuple[float | None, float | None]:
        """Seconds per iteration of this invocation so far, and the seconds left."""
        done = iteration - self._start
        if done <= 0:
            return None, None
        per_iteration = (self._clock() - self._began) / done
        return per_iteration, per_iteration * max(self.total - iteration, 0)

    def line(self, iteration: int, loss: float) -> str:
        """The plain-text progress line (what a log file gets)."""
        per_iteration, left = self.timing(iteration)
        return (
            f"{self.label}: {iteration}/{self.total} loss {loss:.4g} "
            f"{format_rate(per_iteration)} ETA {format_duration(left)}"
        )

    def update(self, iteration: int, loss: float) -> None:
        """Report that ``iteration`` steps are done; ``loss`` as the log will record it."""
        if not self.enabled:
            return
        if self._bar is not None:
            per_iteration, left = self.timing(iteration)
            self._bar.update(
                self._task,
                completed=iteration,
                loss=f"{loss:.4g}",
                rate=format_rate(per_iteration),
                eta=format_duration(left),
            )
            return
        if iteration >= self._next_line or iteration == self.total:
            self._console.print(self.line(iteration, loss), highlight=False, soft_wrap=True)
            self._next_line = iteration + max(1, self.total // 20)

    def message(self, text: str) -> None:
        """A line above the bar (e.g. a checkpoint or figure written)."""
        if self.enabled:
            self._console.print(text, highlight=False, soft_wrap=True)


__all__ = ["TrainingProgress", "format_duration", "format_rate"]
