"""What the trained baselines (PIDM, PG-Diffusion) share around their training loops.

A trained baseline starts from a base checkpoint's EMA weights, trains on the base model's
kind of data (:func:`training_data` checks the file against the checkpoint) and writes a
run directory like the other stages::

    OUT/
      checkpoint/     the trained model in the base checkpoint's format, with
                      extra["baseline"] naming the method (what pirf sample and pirf
                      evaluate read)
      summary.json    the run's summary (the same dictionary the training function returns)

:class:`BaselineRunConfig` holds what every such run takes, :func:`check_run` checks it
before anything is read or written, and :func:`save_baseline` writes the results.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pirf.data
from pirf.errors import PirfError
from pirf.models import LoadedModel, check_matches, save_checkpoint
from pirf.training.config import WARMUP_FRACTION

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
    """What a training loop (:func:`pirf.baselines.pidm.optimise`) did: per-iteration batch
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


def save_baseline(
    name: str,
    config: Any,
    model: nn.Module,
    ema: nn.Module | None,
    base: LoadedModel,
    data: TrainingData,
    run: Optimisation,
    *,
    details: dict[str, Any],
    summary: dict[str, Any],
    device: torch.device,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a trained baseline's ``OUT/checkpoint`` (the base model's format, with
    ``extra["baseline"] = name``) and ``OUT/summary.json``; returns the summary."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    info = base.checkpoint.info
    record = {
        **config.to_json(),
        "warmup": warmup_iterations(config.iters),
        "lr_final_ratio": LR_FINAL_RATIO,
        **(training or {}),
    }
    key = name.replace("-", "_")
    save_checkpoint(
        out / CHECKPOINT,
        model,
        ema=ema,
        pde=info.pde,
        normalisation=base.normalisation,
        resolution=base.resolution,
        training={k: v for k, v in record.items() if k not in ("progress", "device")},
        counters={
            "iteration": config.iters,
            "samples": config.iters * config.batch,
            "seconds": run.seconds,
        },
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


__all__ = [
    "CHECKPOINT",
    "FINAL_WINDOW",
    "LR_FINAL_RATIO",
    "SUMMARY",
    "BaselineRunConfig",
    "Optimisation",
    "TrainingData",
    "check_positive",
    "check_run",
    "final_means",
    "save_baseline",
    "training_data",
    "warmup_iterations",
    "write_summary",
]
