"""The sections every training-like run shares: the optimiser and the run's files.

Base training, PIRF fine-tuning and the trained baselines (PIDM, PG-Diffusion) all run
Adam with a linear warm-up and a cosine decay, keep an EMA of the weights, and write a run
directory with periodic checkpoints, a metrics log and a summary. These two sections say
how; each kind of run supplies its own defaults (``DEFAULTS`` in its config module).
Settings left at ``None`` take those defaults (:mod:`pirf.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pirf.settings import FIGURE_FORMAT_HELP, FIGURE_FORMAT_METAVAR, setting

WARMUP_FRACTION = 0.05
"""Default warm-up length as a fraction of ``iters``."""

RESUMABLE = frozenset(
    {
        "iters",
        "device",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "stop_at",
        "resume",
        "progress",
        "figures",
        "figure_format",
        "tracker",
        "compile",
        "figure_every",
        "out",
        "ckpt",
    }
)
"""Settings a resumed run may change: its length and its bookkeeping (and where the base
checkpoint lies: fine-tuning checks the base's identity by its SHA-256). Every other
setting is fixed for the lifetime of a run (a resume that gives another value is
refused)."""


INVOCATION = frozenset({"stop_at", "resume", "progress", "device", "out", "ckpt"})
"""Settings of one invocation: a resumed run never takes them from the stored run."""


@dataclass
class Optimiser:
    """Adam with a linear warm-up and a cosine decay, and an EMA of the weights."""

    lr: float | None = setting("Peak learning rate of Adam.")
    iters: int | None = setting("Optimizer steps of the run (a resumed run may extend it).")
    batch: int | None = setting("Samples (trajectories) per optimizer step, over all processes.")
    warmup: int | None = setting("Linear warm-up in iterations.", shown_default="5 % of --iters")
    lr_final_ratio: float | None = setting(
        "Learning rate at the last iteration as a fraction of --lr (cosine decay)."
    )
    grad_clip: float | None = setting("Clip the gradient norm to this (0: no clipping).")
    ema_halflife: float | None = setting(
        "Half-life of the weights' EMA, in samples (0: the EMA is the current weights)."
    )
    ema_rampup: float | None = setting(
        "The EMA half-life is at most this fraction of the samples seen so far.", cli=False
    )
    seed: int | None = setting("Seed of every random draw of the run.")


@dataclass
class RunFiles:
    """Where a run writes, how often, and where it computes."""

    out: Path | None = setting("Run directory (created; --resume continues the run in it).")
    device: str | None = setting("cpu, cuda, cuda:N or auto (CUDA when available).")
    checkpoint_every: int | None = setting("Iterations between periodic checkpoints.")
    keep_checkpoints: int | None = setting("Periodic checkpoints kept (the newest).", cli=False)
    log_every: int | None = setting("Iterations per line of metrics.jsonl.")
    stop_at: int | None = setting(
        "End this invocation after this iteration (with a checkpoint); --resume continues."
    )
    resume: bool | None = setting("Continue the run in --out from its newest checkpoint.")
    figures: bool | None = setting("Draw figures (samples, curves).")
    figure_format: str | None = setting(FIGURE_FORMAT_HELP, metavar=FIGURE_FORMAT_METAVAR)
    tracker: str | None = setting(
        "Also send the metrics to tensorboard or wandb (optional extras; W&B offline unless "
        "logged in), or none.",
        metavar="{none,tensorboard,wandb}",
    )
    progress: bool | None = setting("Show progress on stderr.", cli=False)


RUN_DEFAULTS = {
    "device": "auto",
    "keep_checkpoints": 1,
    "resume": False,
    "figures": True,
    "figure_format": "png",
    "progress": True,
    "tracker": "none",
}
"""Defaults of :class:`RunFiles` shared by every kind of run."""


def default_warmup(iters: int) -> int:
    """The warm-up of a run of ``iters`` iterations: 5 % of it, at least one step."""
    return max(1, round(WARMUP_FRACTION * iters))


__all__ = [
    "INVOCATION",
    "RESUMABLE",
    "RUN_DEFAULTS",
    "WARMUP_FRACTION",
    "Optimiser",
    "RunFiles",
    "default_warmup",
]
