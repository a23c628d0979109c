"""What a training run is: :class:`TrainConfig`, its per-preset defaults, and its checks.

Fields left as ``None`` are filled in by :func:`resolve_config`: from the checkpoint when a
run is resumed, otherwise from :data:`PRESET_DEFAULTS`. The *trajectory* fields (everything
that changes which numbers the run computes: preset, batch, learning rate, schedule, EMA,
clipping, seed, network overrides) are stored in every checkpoint; a resumed run takes them
from there and refuses a conflicting value, so that resuming can never silently become a
different run. Only the length of the run (``iters``) and the bookkeeping fields (device,
checkpoint / figure / log frequencies) may change on resume.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option
from pirf.models import PRESETS

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
"""Per-preset defaults of the fields a user usually does not set (see docs/training.md)."""

WARMUP_FRACTION = 0.05
"""Default warm-up length as a fraction of ``iters``."""

TRAJECTORY_FIELDS = (
    "preset",
    "batch",
    "lr",
    "warmup",
    "lr_final_ratio",
    "ema_halflife",
    "ema_rampup",
    "grad_clip",
    "seed",
    "model_overrides",
)
"""Fields that define the numbers a run computes; fixed for the lifetime of a run."""


@dataclass
class TrainConfig:
    """Arguments of :func:`pirf.training.train`. ``None`` means "default" (see module doc)."""

    data: Path | str
    """Training set (a pirf HDF5 fields file)."""
    out: Path | str
    """Run directory: checkpoints, metrics, figures, summary."""
    preset: str | None = None
    """Network size: ``tiny``, ``small`` or ``paper`` (``pirf.models.PRESETS``)."""
    iters: int | None = None
    """Total optimizer steps of the run (a resumed run may extend it)."""
    batch: int | None = None
    """Global batch size (split evenly across processes under ``torchrun``)."""
    lr: float | None = None
    """Peak learning rate of Adam."""
    warmup: int | None = None
    """Linear warm-up length in iterations; default 5% of ``iters``."""
    lr_final_ratio: float | None = None
    """Learning rate at the last iteration as a fraction of ``lr`` (cosine decay); 0.05."""
    ema_halflife: float | None = None
    """EMA half-life in training samples (EDM convention)."""
    ema_rampup: float | None = None
    """EMA half-life is at most this fraction of the samples seen so far; 0.05."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value (0 disables); 1.0."""
    seed: int | None = None
    """Seed of every random draw of the run (initialisation, batches, noise, dropout); 0."""
    model_overrides: dict[str, Any] | None = None
    """``UNetConfig`` fields replacing the preset's (e.g. ``{"base_channels": 8}``)."""
    device: str = "auto"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; under ``torchrun`` CUDA ranks use their
    ``LOCAL_RANK``."""
    bf16: bool = True
    """bfloat16 autocast of the network on CUDA (ignored on CPU)."""
    channels_last: bool = True
    """channels_last memory format on CUDA (ignored on CPU)."""
    checkpoint_every: int | None = None
    """Iterations between periodic checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 1
    """Periodic checkpoints kept on disk (the newest ones)."""
    figure_every: int | None = None
    """Training samples between sample figures (0 disables them)."""
    figure_samples: int = 4
    """EMA-model samples per figure."""
    figure_steps: int = 18
    """Heun steps of the figure samples."""
    log_every: int = 10
    """Iterations per line of ``metrics.jsonl`` (loss and gradient norm averaged over them)."""
    stop_at: int | None = None
    """End this invocation after this iteration (with a checkpoint), e.g. to split a run
    across job time limits; ``--resume`` continues it."""
    resume: bool = False
    """Continue the run in ``out`` from its newest periodic checkpoint."""
    progress: bool = True
    """Show a progress bar (rich, on stderr) on the main process."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON stored with the checkpoint (not used by training)."""

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.out = Path(self.out)

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON values (paths as strings)."""
        data = asdict(self)
        data["data"] = str(self.data)
        data["out"] = str(self.out)
        return data


def _check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if allow_zero and value == 0:
        return
    if not value > 0:
        bound = ">= 0" if allow_zero else "positive"
        raise PirfError(f"{name} must be {bound}, got {value}")


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def validate_arguments(config: TrainConfig) -> None:
    """Check the user's arguments before anything is read or written (one-line errors)."""
    if config.preset is None and not config.resume:
        raise PirfError(
            f"{option('preset')} is required to start a run; known: {', '.join(PRESETS)}"
        )
    if config.preset is not None and config.preset not in PRESETS:
        raise PirfError(f"unknown model preset '{config.preset}'; known: {', '.join(PRESETS)}")
    for name in ("iters", "batch", "lr", "checkpoint_every", "log_every", "figure_steps"):
        _check_positive(option(name), getattr(config, name))
    for name in ("figure_every", "figure_samples", "warmup", "grad_clip", "ema_halflife"):
        _check_positive(option(name), getattr(config, name), allow_zero=True)
    if config.keep_checkpoints < 1:
        raise PirfError(f"keep_checkpoints must be at least 1, got {config.keep_checkpoints}")
    if config.seed is not None and config.seed < 0:
        raise PirfError(f"{option('seed')} must be non-negative, got {config.seed}")
    if config.lr_final_ratio is not None and not 0 <= config.lr_final_ratio <= 1:
        raise PirfError(f"lr_final_ratio must lie in [0, 1], got {config.lr_final_ratio}")
    if config.ema_rampup is not None and config.ema_rampup < 0:
        raise PirfError(f"ema_rampup must be >= 0, got {config.ema_rampup}")
    if config.stop_at is not None and config.stop_at <= 0:
        raise PirfError(f"stop_at must be positive, got {config.stop_at}")
    if config.out.exists() and not config.out.is_dir():
        raise PirfError(f"{option('out')} {config.out} is a file; give a directory for the run")
    if not config.data.exists():
        raise PirfError(f"no such data file: {config.data}")


def resolve_config(config: TrainConfig, stored: dict[str, Any] | None = None) -> TrainConfig:
    """Fill in every ``None`` field; ``stored`` is the training record of a resumed run.

    For a resumed run, trajectory fields come from ``stored``; one given explicitly with a
    different value is a :class:`PirfError`. ``iters`` defaults to the stored value.
    """
    values: dict[str, Any] = {}
    if stored is not None:
        for name in TRAJECTORY_FIELDS:
            given, before = _as_json(getattr(config, name)), stored.get(name)
            if given is not None and given != before:
                raise PirfError(
                    f"{option('resume', True)}: {option(name)} is {given!r} but the run in "
                    f"{config.out} was made with {before!r}; drop the option or start a new "
                    f"run in another {option('out')} directory"
                )
            values[name] = before
        values["iters"] = config.iters if config.iters is not None else stored.get("iters")
    else:
        if config.preset is None:
            raise PirfError(
            f"{option('preset')} is required to start a run; known: {', '.join(PRESETS)}"
        )
        values = {name: getattr(config, name) for name in TRAJECTORY_FIELDS}
        values["iters"] = config.iters
    defaults = PRESET_DEFAULTS[values["preset"]]
    general = {
        "iters": defaults["iters"],
        "batch": defaults["batch"],
        "lr": defaults["lr"],
        "lr_final_ratio": 0.05,
        "ema_halflife": defaults["ema_halflife"],
        "ema_rampup": 0.05,
        "grad_clip": 1.0,
        "seed": 0,
        "model_overrides": {},
    }
    for name, default in general.items():
        if values.get(name) is None:
            values[name] = default
    if values["warmup"] is None:
        values["warmup"] = max(1, round(WARMUP_FRACTION * values["iters"]))
    if config.checkpoint_every is None:
        values["checkpoint_every"] = defaults["checkpoint_every"]
    if config.figure_every is None:
        values["figure_every"] = defaults["figure_every"]
    resolved = replace(config, **values)
    validate_arguments(resolved)
    return resolved


def trajectory_record(config: TrainConfig) -> dict[str, Any]:
    """The fields stored in a checkpoint's ``training`` entry (resolved config as JSON)."""
    names = {f.name for f in fields(TrainConfig)} - {"resume", "progress", "extra"}
    data = config.to_json()
    return _as_json({name: data[name] for name in sorted(names)})


__all__ = [
    "PRESET_DEFAULTS",
    "TRAJECTORY_FIELDS",
    "WARMUP_FRACTION",
    "TrainConfig",
    "resolve_config",
    "trajectory_record",
    "validate_arguments",
]
