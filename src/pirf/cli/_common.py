"""Shared helpers of the CLI commands: consoles, JSON output, device selection."""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from rich.console import Console

from pirf.errors import PirfError

console = Console(stderr=False)
console_err = Console(stderr=True)


def emit_json(payload: dict[str, Any]) -> None:
    """Write one JSON object to stdout (nothing else goes to stdout with ``--json``)."""
    sys.stdout.write(json.dumps(payload, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` -> a device, with a clear error if absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PirfError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PirfError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type not in {"cpu", "cuda"}:
        raise PirfError(f"unsupported device '{name}'; use cpu, cuda, cuda:N or auto")
    return device
