"""What a training run is: :class:`TrainConfig`, its per-preset defaults, and its checks.

Sections (:mod:`pirf.settings`): the network, the optimiser, the preview figures and the
run's files. A setting left at ``None`` is filled by :func:`resolve`: from the checkpoint
when a run is resumed, otherwise from the preset's defaults (:data:`PRESET_DEFAULTS`),
then :data:`DEFAULTS`. Every resolved setting is stored in every checkpoint and in the
run's ``config.toml``; a resumed run takes them from there and refuses a conflicting
value, so that resuming can never silently become a different run. Only the length of the
run and its bookkeeping (:data:`pirf.training.sections.RESUMABLE`) may change on resume.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option
from pirf.settings import (
    build,
    fill,
    flat,
    refuse_changes,
    section,
    setting,
    stored_values,
    with_values,
)
from pirf.training.sections import (
    INVOCATION,
    RESUMABLE,
    RUN_DEFAULTS,
    WARMUP_FRACTION,
    Optimiser,
    RunFiles,
    default_warmup,
)

MODEL_PRESETS: tuple[str, ...] = ("tiny", "small", "paper")
"""The network presets (:data:`pirf.models.PRESETS`)."""

PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {
        "iters": 1200,
        "batch": 32,
        "lr": 1e-3,
        "ema_halflife": 10_000.0,
        "checkpoint_every": 250,
        "figure_every": 16_000,
    },
    "small": {
        "iters": 40_000,
        "batch": 64,
        "lr": 4e-4,
        "ema_halflife": 100_000.0,
        "checkpoint_every": 2_000,
        "figure_every": 256_000,
    },
    "paper": {
        "iters": 200_000,
        "batch": 128,
        "lr": 2e-4,
        "ema_halflife": 500_000.0,
        "checkpoint_every": 5_000,
        "figure_every": 1_280_000,
    },
}
"""Per-preset defaults of the settings a user usually does not set (docs/training.md)."""

DEFAULTS: dict[str, Any] = {
    "lr_final_ratio": 0.05,
    "ema_rampup": 0.05,
    "grad_clip": 1.0,
    "seed": 0,
    "model_overrides": {},
    "bf16": True,
    "channels_last": True,
    "figure_samples": 4,
    "figure_steps": 18,
    "log_every": 10,
    **RUN_DEFAULTS,
}
"""The defaults every preset shares, in one place."""

TRAIN_RESUMABLE = RESUMABLE | {"data", "figure_samples", "figure_steps"}
"""What a resumed training run may change: :data:`RESUMABLE`, where the training set lies
(its identity is checked by its contents) and the preview figures."""


def parse_overrides(items: list[str] | str) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict (values parsed as JSON when they are)."""
    overrides: dict[str, Any] = {}
    for item in [items] if isinstance(items, str) else items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PirfError(f"{option('model_overrides', flag='--model-option')} expects "
                            f"key=value, got '{item}'")  # fmt: skip
        try:
            overrides[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key.strip()] = raw
    return overrides


@dataclass
class Network:
    """The denoiser that is trained."""

    preset: str | None = setting(
        "Network size: tiny, small or paper. Required to start a run; --resume takes the run's own."
    )
    model_overrides: dict[str, Any] | None = setting(
        "U-Net setting key=value (JSON value) replacing the preset's; repeat.",
        flag="--model-option",
        metavar="KEY=VALUE",
        parse=parse_overrides,
    )
    bf16: bool | None = setting("bfloat16 autocast of the network (CUDA only).")
    channels_last: bool | None = setting("channels_last memory format (CUDA only).", cli=False)


@dataclass
class Preview:
    """Sample figures drawn during training."""

    figure_every: int | None = setting("Training samples between preview figures (0: none).")
    figure_samples: int | None = setting("EMA-model samples per figure.", cli=False)
    figure_steps: int | None = setting("Heun steps of the figure samples.", cli=False)


@dataclass
class TrainConfig:
    """Arguments of :func:`pirf.training.train`. ``None`` means "default" (module doc)."""

    data: Path | None = setting("Training set (a pirf HDF5 fields file).")
    network: Network = section(Network)
    optimiser: Optimiser = section(Optimiser)
    preview: Preview = section(Preview)
    run: RunFiles = section(RunFiles)
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON stored with the checkpoint (not used by training)."""

    @classmethod
    def of(cls, **values: Any) -> TrainConfig:
        """A configuration from flat setting names: ``TrainConfig.of(data=..., out=...,
        preset="tiny")``; ``extra`` may be given too."""
        extra = values.pop("extra", None) or {}
        config = build(cls, **values)
        config.extra = dict(extra)
        return config


def _check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if allow_zero and value == 0:
        return
    if not value > 0:
        bound = ">= 0" if allow_zero else "positive"
        raise PirfError(f"{option(name)} must be {bound}, got {value}")


def check_arguments(config: TrainConfig) -> None:
    """Check the given settings before anything is read or written (one-line errors)."""
    values = flat(config)
    preset = values["preset"]
    if preset is None and not values["resume"]:
        raise PirfError(
            f"{option('preset')} is required to start a run; known: {', '.join(MODEL_PRESETS)}"
        )
    if preset is not None and preset not in MODEL_PRESETS:
        raise PirfError(f"unknown model preset '{preset}'; known: {', '.join(MODEL_PRESETS)}")
    for name in ("iters", "batch", "lr", "checkpoint_every", "log_every", "figure_steps"):
        _check_positive(name, values[name])
    for name in ("figure_every", "figure_samples", "warmup", "grad_clip", "ema_halflife"):
        _check_positive(name, values[name], allow_zero=True)
    if values["keep_checkpoints"] is not None and values["keep_checkpoints"] < 1:
        raise PirfError(f"{option('keep_checkpoints')} must be at least 1")
    if values["seed"] is not None and values["seed"] < 0:
        raise PirfError(f"{option('seed')} must be non-negative, got {values['seed']}")
    ratio = values["lr_final_ratio"]
    if ratio is not None and not 0 <= ratio <= 1:
        raise PirfError(f"{option('lr_final_ratio')} must lie in [0, 1], got {ratio}")
    if values["ema_rampup"] is not None and values["ema_rampup"] < 0:
        raise PirfError(f"{option('ema_rampup')} must be >= 0, got {values['ema_rampup']}")
    if values["stop_at"] is not None and values["stop_at"] <= 0:
        raise PirfError(f"{option('stop_at')} must be positive, got {values['stop_at']}")
    if values["data"] is None or values["out"] is None:
        raise PirfError(f"a training run needs {option('data')} and {option('out')}")
    out = Path(values["out"])
    if out.exists() and not out.is_dir():
        raise PirfError(f"{option('out')} {out} is a file; give a directory for the run")
    if not Path(values["data"]).exists():
        raise PirfError(f"no such data file: {values['data']}")


def stored_settings(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings as its checkpoints store them, as values of :class:`TrainConfig`."""
    return stored_values(TrainConfig, stored)


def resolve(config: TrainConfig, stored: Mapping[str, Any] | None = None) -> TrainConfig:
    """Every setting filled (module docstring); ``stored`` holds a resumed run's settings
    (:func:`stored_settings`). ``iters`` defaults to the stored value, the warm-up to 5 %
    of ``iters``."""
    check_arguments(config)
    if stored is not None:
        refuse_changes(config, stored, TRAIN_RESUMABLE)
        config = fill(config, {k: v for k, v in stored.items() if k not in INVOCATION})
    preset = config.network.preset
    if preset is None:
        raise PirfError(
            f"{option('preset')} is required to start a run; known: {', '.join(MODEL_PRESETS)}"
        )
    config = fill(config, PRESET_DEFAULTS[preset], DEFAULTS)
    if config.optimiser.warmup is None:
        config = with_values(config, {"warmup": default_warmup(config.optimiser.iters)})
    check_arguments(config)
    return config


__all__ = [
    "DEFAULTS",
    "MODEL_PRESETS",
    "PRESET_DEFAULTS",
    "TRAIN_RESUMABLE",
    "WARMUP_FRACTION",
    "Network",
    "Preview",
    "TrainConfig",
    "check_arguments",
    "parse_overrides",
    "resolve",
    "stored_settings",
]
