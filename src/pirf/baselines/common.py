"""What the trained baselines (PIDM, PG-Diffusion) share: their run on the one run loop.

A trained baseline starts from a base checkpoint's EMA weights, trains on the base model's
kind of data (:func:`training_data` checks the file against the checkpoint) and writes a
run directory like the other stages::

    OUT/
      checkpoint/     the trained model in the base checkpoint's format, with
                      extra["baseline"] naming the method (what pirf sample and pirf
                      evaluate read)
      summary.json    the run's summary (the same dictionary the training function returns)

:class:`BaselineRunConfig` holds what every such run takes, :func:`check_run` checks it
before anything is read or written, :func:`optimise` trains (a :class:`LossTraining` task
of :mod:`pirf.training.runloop`) and writes the checkpoints through
:func:`baseline_saver`, and :func:`baseline_summary` the summary.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pirf.data
from pirf.errors import PirfError
from pirf.models import LoadedModel, check_matches, save_checkpoint
from pirf.training.batches import BatchSource
from pirf.training.draws import Draws
from pirf.training.ema import EMA
from pirf.training.runloop import StepStats
from pirf.training.schedule import adam
from pirf.training.sections import WARMUP_FRACTION

LR_FINAL_RATIO = 0.05
"""Learning rate at the last iteration as a fraction of the peak (as in base training)."""
FINAL_WINDOW = 10
"""The summary's final losses average the last this many iterations."""
CHECKPOINT = "checkpoint"
"""The run directory's checkpoint folder."""
SUMMARY = "summary.json"
"""The run directory's summary file."""


@dataclass
class BaselineRunConfig:
    """What every trained baseline's run takes (PIDM, PG-Diffusion add their own)."""

    ckpt: Path | str
    """Base checkpoint (``pirf train`` output, or its run directory: see
    :func:`pirf.models.resolve_checkpoint`); training starts from its EMA weights."""
    data: Path | str
    """Training fields (a pirf fields file of the base model's PDE and resolution)."""
    out: Path | str
    """Run directory: ``OUT/checkpoint`` and ``OUT/summary.json``."""
    iters: int = 200
    batch: int = 16
    lr: float = 1e-4
    """Peak Adam learning rate (short linear warm-up, then cosine decay to 5 %)."""
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON values (paths as strings)."""
        values = asdict(self)
        for name in ("ckpt", "data", "out"):
            values[name] = str(values[name])
        return values


@dataclass(frozen=True)
class TrainingData:
    """Training fields in the base model's space, and what the checkpoint records of them."""

    fields: torch.Tensor
    """``(N, C, H, W)`` float32 on the CPU, normalised with the *checkpoint's*
    normalisation (the model's space is the checkpoint's, whatever file the data is from)."""
    record: dict[str, Any]


def training_data(base: LoadedModel, path: str | Path) -> TrainingData:
    """Read a fields file after checking it holds the base model's PDE (name, parameters,
    channels) at its resolution; PirfError names the first difference."""
    data = pirf.data.load(path)
    try:
        check_matches(
            base.checkpoint.info,
            pde=data.pde.name,
            channels=data.channels,
            resolution=data.resolution,
            params=data.params,
        )
        if len(data) == 0:
            raise PirfError(f"{path} holds no samples to train on")
        values = base.normalisation.to_model(data.fields())
        record = {
            "path": str(data.path),
            "samples": len(data),
            "seed": data.seed,
            "split": data.split,
        }
    finally:
        data.close()
    return TrainingData(values.float().contiguous(), record)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """One-line error unless ``value`` is positive (or zero, if allowed) and finite."""
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise PirfError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value}")


def check_run(
    out: str | Path, iters: int, batch: int, lr: float, seed: int, data: str | Path
) -> None:
    """The checks every trained baseline makes before reading or writing anything."""
    for name, value in (("iters", iters), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PirfError(f"{name} must be a positive integer, got {value!r}")
    check_positive("lr", lr)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PirfError(f"seed must be a non-negative integer, got {seed!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise PirfError(f"out {out} is a file; give a directory for the run")
    if not Path(data).is_file():
        raise PirfError(f"no such data file: {data}")


def warmup_iterations(iters: int) -> int:
    """Length of the linear warm-up: 5 % of the run (at least one step), as in training."""
    return max(1, round(WARMUP_FRACTION * iters))


@dataclass(frozen=True)
class Optimisation:
    """What a training loop (:func:`optimise`) did: per-iteration batch
    means of every loss part, and time."""

    history: list[dict[str, float]]
    seconds: float


def final_means(history: list[dict[str, float]], window: int = FINAL_WINDOW) -> dict[str, float]:
    """``final_<part>``: each logged quantity averaged over the last ``window`` iterations
    (one iteration's batch is too noisy to compare runs by)."""
    last = history[-window:]
    if not last:
        return {}
    return {f"final_{name}": sum(row[name] for row in last) / len(last) for name in last[0]}


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """``OUT/summary.json`` (the same dictionary the training function returns)."""
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def baseline_saver(
    name: str,
    config: Any,
    model: nn.Module,
    ema: nn.Module | None,
    base: LoadedModel,
    data: TrainingData,
    *,
    details: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> Callable[[Path, Any, dict[str, Any]], None]:
    """``save(path, optimizer, counters)`` for a trained baseline's checkpoints: the base
    model's format with ``extra["baseline"] = name`` (what ``pirf sample`` and
    ``pirf evaluate`` read); ``optimizer`` (periodic checkpoints) holds Adam's state."""
    info = base.checkpoint.info
    record = {
        **config.to_json(),
        "warmup": warmup_iterations(config.iters),
        "lr_final_ratio": LR_FINAL_RATIO,
        **(training or {}),
    }
    key = name.replace("-", "_")

    def save(path: Path, optimizer: Any, counters: dict[str, Any]) -> None:
        save_checkpoint(
            path,
            model,
            ema=ema,
            optimizer=optimizer,
            pde=info.pde,
            normalisation=base.normalisation,
            resolution=base.resolution,
            training={k: v for k, v in record.items() if k not in ("progress", "device")},
            counters=counters,
            extra={
                **info.extra,
                "baseline": name,
                key: {
                    "base": str(config.ckpt),
                    "base_sha256": base.sha256,
                    "base_training": info.training,
                    "data": data.record,
                    **details,
                },
            },
            overwrite=True,
        )

    return save


def baseline_summary(
    name: str,
    config: Any,
    model: nn.Module,
    run: Optimisation,
    *,
    summary: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """A trained baseline's summary, also written to ``OUT/summary.json``."""
    out = Path(config.out)
    result: dict[str, Any] = {
        "baseline": name,
        "out": str(out),
        "checkpoint": str(out / CHECKPOINT),
        "iterations": config.iters,
        "seconds": run.seconds,
        "seconds_per_iteration": run.seconds / config.iters,
        **final_means(run.history),
        **summary,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
    }
    write_summary(out, result)
    return result


LossFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
"""``loss_fn(iteration, x, sigma, noise) -> {"loss": (B,), other parts: (B,)}``; the mean
of ``"loss"`` is back-propagated, the other parts are only logged."""


class LossTraining:
    """The run-loop task of a trained baseline (:class:`pirf.training.runloop.Task`): Adam
    on the batch mean of ``loss_fn`` over training batches, gradient clipping, an EMA.

    Batches of ``fields`` and their EDM noise levels and noise fields come from
    :class:`pirf.training.draws.Draws` keyed by ``(seed, iteration)``, and the global
    generator (dropout) is re-seeded from the same key before every step, so a run (and a
    resumed one) is reproducible. A non-finite loss or gradient stops the run with a
    PirfError."""

    def __init__(
        self,
        label: str,
        model: nn.Module,
        loss_fn: LossFn,
        *,
        fields: torch.Tensor,
        config: Any,
        grad_clip: float,
        device: torch.device,
        ema: EMA | None,
        save: Callable[[Path, Any, dict[str, Any]], None],
        end: int,
    ) -> None:
        self.label, self.model, self.loss_fn, self.ema = label, model, loss_fn, ema
        self.batch, self.grad_clip, self.save_checkpoint = config.batch, grad_clip, save
        self.draws = Draws(config.seed, n_data=len(fields), batch=config.batch)
        self.batches = BatchSource(fields, self.draws, device)
        self.optimizer = adam(model.parameters(), config.lr)
        self.history: list[dict[str, float]] = []
        self.end = end

    def step(self, iteration: int, lr: float) -> StepStats:
        began = time.perf_counter()
        x, sigma, noise = self.batches.get(iteration, prefetch_next=iteration + 1 < self.end)
        torch.manual_seed(self.draws.dropout_seed(iteration))
        parts = self.loss_fn(iteration, x, sigma, noise)
        loss = parts["loss"].mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.grad_clip if self.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit))
        means = {name: float(value.detach().mean()) for name, value in parts.items()}
        if not (math.isfinite(means["loss"]) and math.isfinite(grad_norm)):
            what = "loss" if not math.isfinite(means["loss"]) else "gradient norm"
            raise PirfError(
                f"training diverged: non-finite {what} at iteration {iteration + 1}; "
                "try a lower lr"
            )
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, samples_seen=(iteration + 1) * self.batch, batch=self.batch)
        self.history.append({**means, "lr": lr, "grad_norm": grad_norm})
        values = {name: value for name, value in means.items() if name != "loss"}
        return StepStats(means["loss"], grad_norm, time.perf_counter() - began, values=values)

    def counters(self, done: int) -> dict[str, Any]:
        return {"samples": done * self.batch}

    def begin(self, loop: Any) -> None:
        """Nothing to measure before the first step."""

    def guard(self, stats: StepStats) -> str | None:
        return None

    def after_step(self, loop: Any, done: int, stopping: bool) -> str | None:
        return None

    def save(self, path: Path, *, periodic: bool, counters: dict[str, Any]) -> None:
        self.save_checkpoint(path, self.optimizer if periodic else None, counters)

    def summary(self, loop: Any) -> dict[str, Any]:
        return {}


def optimise(
    model: nn.Module,
    loss_fn: LossFn,
    *,
    fields: torch.Tensor,
    config: Any,
    grad_clip: float,
    device: torch.device,
    save: Callable[[Path, Any, dict[str, Any]], None],
    ema: EMA | None = None,
    label: str = "train",
) -> Optimisation:
    """Train ``model`` on ``loss_fn`` for ``config.iters`` steps on the one run loop
    (:mod:`pirf.training.runloop`): the shared Adam and rate schedule (warm-up 5 %, cosine
    decay to 5 %), ``OUT/metrics.jsonl``, a periodic checkpoint every ``checkpoint_every``
    iterations (all of them by default: the runs are short) and the final
    ``OUT/checkpoint``. The caller's random state is left alone."""
    from pirf.training.runloop import LoopSettings, RunLoop
    from pirf.training.sections import Optimiser

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    task = LossTraining(
        label,
        model,
        loss_fn,
        fields=fields,
        config=config,
        grad_clip=grad_clip,
        device=device,
        ema=ema,
        save=save,
        end=config.iters,
    )
    schedule = Optimiser(
        lr=config.lr,
        iters=config.iters,
        batch=config.batch,
        warmup=warmup_iterations(config.iters),
        lr_final_ratio=LR_FINAL_RATIO,
    )
    settings = LoopSettings(
        out=out,
        optimiser=schedule,
        checkpoint_every=config.iters,
        keep_checkpoints=1,
        log_every=FINAL_WINDOW,
        stop_at=None,
        resume=False,
        progress=bool(config.progress),
    )
    devices = [device.index or 0] if device.type == "cuda" else []
    model.train()
    try:
        with torch.random.fork_rng(devices=devices):
            summary = RunLoop(task, settings, {"iteration": 0, "seconds": 0.0}).run(
                fresh=lambda: False
            )
    finally:
        task.batches.close()
        model.eval()
    return Optimisation(task.history, float(summary.total_seconds))


__all__ = [
    "CHECKPOINT",
    "FINAL_WINDOW",
    "LR_FINAL_RATIO",
    "SUMMARY",
    "BaselineRunConfig",
    "LossFn",
    "LossTraining",
    "Optimisation",
    "TrainingData",
    "baseline_saver",
    "baseline_summary",
    "check_positive",
    "check_run",
    "final_means",
    "optimise",
    "training_data",
    "warmup_iterations",
    "write_summary",
]
