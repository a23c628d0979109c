"""Turning a user's device string into a torch device that exists on this machine."""

from __future__ import annotations

import torch

from pirf.errors import PirfError


def resolve_device(device: torch.device | str) -> torch.device:
    """``cpu``, ``cuda[:N]``, ``auto`` or a device -> a device that exists on this machine."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise PirfError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PirfError("device cuda was asked for but no CUDA GPU is available; use cpu")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise PirfError(
                f"device {device} does not exist: this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    if device.type not in {"cpu", "cuda"}:
        raise PirfError(f"unsupported device '{device}'; use cpu, cuda, cuda:N or auto")
    return device
