"""Experiment trackers beside ``metrics.jsonl``: TensorBoard and Weights & Biases.

``metrics.jsonl`` is always written; ``--tracker tensorboard`` or ``--tracker wandb`` also
sends every line to that tracker, its nested values under flat ``parent/child`` keys
(:func:`flatten`: ``residual_mse/20``, ``fidelity/mmd``), each under the line's kind
(``train/loss``, ``eval/residual_mse/20``). Both are optional
extras (``pip install "pirf[tensorboard]"``, ``pip install "pirf[wandb]"``), imported only
when asked for. W&B runs offline (files under the run directory, ``wandb sync`` later)
unless the user is logged in (``WANDB_API_KEY`` or a ``wandb login`` entry in
``~/.netrc``) or sets ``WANDB_MODE`` themselves.
"""

from __future__ import annotations

import math
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pirf.errors import PirfError, option

TRACKERS: tuple[str, ...] = ("tensorboard", "wandb")


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A record with nested mappings flattened to ``parent/child`` keys (lists and other
    values kept as they are)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a flat record (what a tracker plots)."""
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
        if math.isfinite(float(value)) and key not in ("iteration", "kind")
    }


class Tracker(Protocol):
    """A sink for the lines of ``metrics.jsonl``."""

    def log(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...

    def where(self) -> str:
        """How to look at the tracked run (a command or an address)."""
        ...


class TensorBoardTracker:
    """Scalars to ``OUT/tensorboard`` (``tensorboard --logdir OUT/tensorboard``), each line
    of kind ``K`` under ``K/<key>`` at its iteration."""

    def __init__(self, out: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PirfError(
                f"{option('tracker')} tensorboard needs the tensorboard package: "
                'pip install "pirf[tensorboard]"'
            ) from None
        self.folder = out / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def log(self, record: Mapping[str, Any]) -> None:
        kind, step = record.get("kind", "train"), int(record.get("iteration", 0))
        for key, value in _scalars(flatten(record)).items():
            self.writer.add_scalar(f"{kind}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def where(self) -> str:
        return f"tensorboard --logdir {self.folder}"


def wandb_logged_in() -> bool:
    """Whether W&B can reach its server as a user: an API key in the environment or a
    ``wandb login`` entry in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker:
    """A W&B run in ``OUT/wandb``, offline unless the user is logged in (module doc)."""

    def __init__(self, out: Path, name: str, config: Mapping[str, Any]) -> None:
        try:
            import wandb
        except ImportError:
            raise PirfError(
                f'{option("tracker")} wandb needs the wandb package: pip install "pirf[wandb]"'
            ) from None
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
        self.mode = mode
        self.run = wandb.init(
            project="pirf", name=name, dir=str(out), mode=mode, config=dict(config)
        )

    def log(self, record: Mapping[str, Any]) -> None:
        kind, step = record.get("kind", "train"), int(record.get("iteration", 0))
        scalars = {f"{kind}/{key}": value for key, value in _scalars(flatten(record)).items()}
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()

    def where(self) -> str:
        if self.mode == "offline":
            return f"wandb sync {Path(self.run.dir).parent}"
        return str(getattr(self.run, "url", None) or f"W&B run ({self.mode})")


def open_tracker(
    kind: str | None, out: Path, *, name: str, config: Mapping[str, Any]
) -> Tracker | None:
    """The tracker ``kind`` names (None: none). Raises a one-line PirfError for an unknown
    name or a missing package."""
    if kind is None or kind == "none":
        return None
    if kind not in TRACKERS:
        raise PirfError(f"unknown {option('tracker')} '{kind}'; use one of {', '.join(TRACKERS)}")
    if kind == "tensorboard":
        return TensorBoardTracker(out)
    return WandbTracker(out, name, config)


def check_tracker(kind: str | None) -> None:
    """Before any work: the tracker is known and its package importable."""
    import importlib.util

    if kind is None or kind == "none":
        return
    if kind not in TRACKERS:
        raise PirfError(f"unknown {option('tracker')} '{kind}'; use one of {', '.join(TRACKERS)}")
    package = "tensorboard" if kind == "tensorboard" else "wandb"
    if importlib.util.find_spec(package) is None:
        raise PirfError(
            f'{option("tracker")} {kind} needs the {package} package: pip install "pirf[{kind}]"'
        )


__all__ = [
    "TRACKERS",
    "TensorBoardTracker",
    "Tracker",
    "WandbTracker",
    "check_tracker",
    "flatten",
    "open_tracker",
    "wandb_logged_in",
]
