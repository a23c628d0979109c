"""The one run loop of pirf: base training, PIRF fine-tuning and the trained baselines.

A kind of run supplies a :class:`Task`: one optimizer step, how to save and restore its
state, and what to do after a step (evaluations, figures, guards). :class:`RunLoop` owns
everything else, once for all of them:

* the learning-rate schedule (:func:`pirf.training.schedule.scheduled_rate`, set on the
  task's optimizer before every step);
* the run directory: ``metrics.jsonl``, periodic checkpoints (``checkpoints/iter-N``, the
  newest ``keep_checkpoints`` kept), the final ``checkpoint/``, ``summary.json``;
* resume: the task restores its newest periodic checkpoint, the log drops what came after
  it, the counters continue; ``stop_at`` ends an invocation early with a checkpoint;
* progress on stderr (the stage's name, the loss as logged, s/it and the time left).

Every line of ``metrics.jsonl`` is flat: ``kind`` ("train"), ``iteration``, ``loss`` and
``grad_norm`` (means over the interval), ``lr`` (its last step), ``seconds_per_iteration``
(mean), ``seconds`` (wall time of the run, resumed parts included), the task's counters
(e.g. ``samples``), and its own values: means, sums (``counts``) or lists. Tasks may add
other kinds of lines (evaluations) through :attr:`RunLoop.metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pirf.evaluation.results import RunSummary
from pirf.training import rundir
from pirf.training.metrics_log import MetricsLog
from pirf.training.progress import TrainingProgress
from pirf.training.schedule import scheduled_rate, set_learning_rate
from pirf.training.tracking import open_tracker


@dataclass(frozen=True)
class StepStats:
    """What one optimizer step measured."""

    loss: float
    """The loss the progress line and the log show (averaged over processes)."""
    grad_norm: float
    seconds: float
    values: dict[str, float] = field(default_factory=dict)
    """Further numbers, averaged over the log interval."""
    counts: dict[str, int] = field(default_factory=dict)
    """Further counts, summed over the log interval."""
    lists: dict[str, Any] = field(default_factory=dict)
    """Further per-step values, listed over the log interval (e.g. each step's N)."""


class Task(Protocol):
    """What a kind of run supplies to :class:`RunLoop`."""

    label: str
    """The stage's name in the progress line (``train``, ``finetune``, ``pidm``, ...)."""
    optimizer: Any
    """The optimizer whose learning rate the loop sets."""

    def step(self, iteration: int, lr: float) -> StepStats:
        """One optimizer step of iteration ``iteration`` (0-based) at rate ``lr``."""
        ...

    def counters(self, done: int) -> dict[str, Any]:
        """The task's counters after ``done`` iterations (e.g. ``samples``)."""
        ...

    def begin(self, loop: RunLoop) -> None:
        """Before the first step of a new run (not on resume), e.g. evaluate the start."""
        ...

    def guard(self, stats: StepStats) -> str | None:
        """Right after a step: a reason to stop now (e.g. a drifting loss), or None."""
        ...

    def after_step(self, loop: RunLoop, done: int, stopping: bool) -> str | None:
        """After a step is logged: evaluations, figures, guards on them. Returns a reason
        to stop, or None. ``stopping``: a guard stops the run after this step."""
        ...

    def save(self, path: Path, *, periodic: bool, counters: dict[str, Any]) -> None:
        """Write a checkpoint; ``periodic`` ones hold what resuming needs."""
        ...

    def summary(self, loop: RunLoop) -> dict[str, Any]:
        """The task's own entries of ``summary.json``."""
        ...


@dataclass
class LoopSettings:
    """The settings of a run that the loop reads (from the run's resolved sections)."""

    out: Path
    optimiser: Any
    """The resolved :class:`~pirf.training.sections.Optimiser` (schedule, iterations)."""
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    stop_at: int | None
    resume: bool
    progress: bool
    main: bool = True
    """Whether this process writes files and shows progress (rank 0)."""
    tracker: str | None = None
    """``tensorboard`` or ``wandb``: a tracker (:mod:`pirf.training.tracking`) that gets every
    line of the log (opened on the main process for the run)."""
    record: dict[str, Any] = field(default_factory=dict)
    """The run's resolved settings (the tracker's configuration)."""

    @classmethod
    def of(cls, config: Any, out: Path, *, main: bool) -> LoopSettings:
        """The loop's settings of a run configuration with ``optimiser`` and ``run``
        sections (training, fine-tuning)."""
        from pirf.settings import record

        run = config.run
        return cls(
            out=out,
            optimiser=config.optimiser,
            checkpoint_every=run.checkpoint_every,
            keep_checkpoints=run.keep_checkpoints,
            log_every=run.log_every,
            stop_at=run.stop_at,
            resume=bool(run.resume),
            progress=bool(run.progress),
            main=main,
            tracker=run.tracker,
            record=record(config),
        )


class RunLoop:
    """Runs a :class:`Task` for a run's iterations (see the module docstring)."""

    def __init__(self, task: Task, settings: LoopSettings, counters: dict[str, Any]) -> None:
        self.task = task
        self.settings = settings
        self.out = Path(settings.out)
        self.counters = dict(counters) or {"iteration": 0, "seconds": 0.0}
        self.metrics: MetricsLog | None = None
        self.progress: TrainingProgress | None = None
        self.stopped: dict[str, Any] | None = None
        self.step_seconds: list[float] = []
        self.logged: dict[str, Any] | None = None
        """The last line written to ``metrics.jsonl`` by the loop."""
        self.logged_count: int | None = None
        """How many iterations that line averages."""
        self.lr: float | None = None

    @property
    def iteration(self) -> int:
        return int(self.counters.get("iteration", 0))

    def message(self, text: str) -> None:
        """A line above the progress bar."""
        if self.progress is not None:
            self.progress.message(text)

    def log(self, record: dict[str, Any]) -> None:
        """Append a line to ``metrics.jsonl`` (main process only)."""
        if self.metrics is not None:
            self.metrics.append(record)

    def _line(self, interval: list[StepStats], done: int) -> dict[str, Any]:
        count = len(interval)
        line: dict[str, Any] = {
            "kind": "train",
            "iteration": done,
            **{k: v for k, v in self.counters.items() if k not in ("iteration", "seconds")},
            "loss": sum(s.loss for s in interval) / count,
            "lr": self.lr,
            "grad_norm": sum(s.grad_norm for s in interval) / count,
        }
        for key in interval[-1].values:
            line[key] = sum(s.values[key] for s in interval) / count
        for key in interval[-1].counts:
            line[key] = sum(s.counts[key] for s in interval)
        for key in interval[-1].lists:
            line[key] = [s.lists[key] for s in interval]
        line["seconds_per_iteration"] = sum(s.seconds for s in interval) / count
        line["seconds"] = self.counters["seconds"]
        return line

    def summary_median(self) -> float | None:
        """The median seconds of this invocation's steps (None before the first)."""
        steps = sorted(self.step_seconds)
        return steps[len(steps) // 2] if steps else None

    def _save_periodic(self) -> None:
        path = self.out / rundir.PERIODIC / rundir.periodic_name(self.iteration)
        self.task.save(path, periodic=True, counters=self.counters)
        rundir.prune(self.out, self.settings.keep_checkpoints)

    def run(self, *, fresh: Callable[[], bool] | None = None) -> RunSummary:
        """Run from the counters' iteration to the end (or ``stop_at``); returns the run's
        summary, the task's own entries in its ``details``. ``fresh``: whether the task
        must begin (default: when no iteration is done)."""
        settings, task = self.settings, self.task
        total = int(settings.optimiser.iters)
        start = self.iteration
        end = min(total, settings.stop_at) if settings.stop_at is not None else total
        end = max(end, start)
        tracker = None
        if settings.main:
            resume_from = start if settings.resume else None
            tracker = open_tracker(
                settings.tracker, self.out, name=self.out.name, config=settings.record
            )
            self.metrics = MetricsLog(
                self.out / rundir.METRICS, resume_from=resume_from, tracker=tracker
            )
        seconds_before = float(self.counters.get("seconds", 0.0))
        began = time.perf_counter()
        interval: list[StepStats] = []
        try:
            with TrainingProgress(
                enabled=settings.progress and settings.main,
                start=start,
                total=total,
                label=task.label,
            ) as progress:
                self.progress = progress
                if fresh() if fresh is not None else start == 0:
                    task.begin(self)
                    progress.restart()
                iteration = start
                while iteration < end and self.stopped is None:
                    self.lr = scheduled_rate(settings.optimiser, iteration)
                    set_learning_rate(task.optimizer, self.lr)
                    stats = task.step(iteration, self.lr)
                    iteration += 1
                    interval.append(stats)
                    self.step_seconds.append(stats.seconds)
                    self.counters = {
                        "iteration": iteration,
                        **task.counters(iteration),
                        "seconds": seconds_before + time.perf_counter() - began,
                    }
                    progress.update(iteration, sum(s.loss for s in interval) / len(interval))
                    reason = task.guard(stats)
                    last = iteration == end
                    if iteration % settings.log_every == 0 or last or reason is not None:
                        self.logged, self.logged_count = (
                            self._line(interval, iteration),
                            len(interval),
                        )
                        self.log(self.logged)
                        interval = []
                    after = task.after_step(self, iteration, reason is not None)
                    reason = reason or after
                    if reason is not None:
                        self.stopped = {"iteration": iteration, "reason": reason}
                        progress.message(f"stopped: {reason}")
                    due = iteration % settings.checkpoint_every == 0 or last or self.stopped
                    if due and settings.main:
                        self._save_periodic()
                completed = iteration >= total or self.stopped is not None
                if completed and settings.main:
                    task.save(self.out / rundir.FINAL, periodic=False, counters=self.counters)
        finally:
            self.progress = None
            if tracker is not None:
                tracker.close()
        elapsed = time.perf_counter() - began
        self.counters["seconds"] = seconds_before + elapsed
        return RunSummary(
            out=str(self.out),
            checkpoint=str(self.out / rundir.FINAL) if completed else None,
            completed=completed,
            stopped=self.stopped,
            start_iteration=start,
            iterations=self.iteration,
            target_iterations=total,
            final_loss=None if self.logged is None else self.logged["loss"],
            final_loss_iterations=self.logged_count,
            final_lr=self.lr,
            seconds=elapsed,
            total_seconds=self.counters["seconds"],
            seconds_per_iteration=self.summary_median(),
            metrics=str(self.out / rundir.METRICS),
            tracker=None if tracker is None else tracker.where(),
            details=task.summary(self),
        )


__all__ = ["LoopSettings", "RunLoop", "StepStats", "Task"]
