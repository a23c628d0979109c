"""How many CPU threads a pirf command computes with.

PyTorch starts one OpenMP thread per physical core. That is right on an idle machine and
badly wrong on a busy one: OpenMP threads spin while they wait for each other, and a
thread that shares its core with another job holds every other thread of the process
back. On a 2-core machine with other jobs running, two threads per process made a
fine-tuning iteration several times slower than one (docs/BENCHMARKS.md). So the command
line chooses the count deliberately:

* ``--threads N`` wins;
* else ``OMP_NUM_THREADS``, if the user set it (PyTorch has already read it);
* else one thread per core this process may run on that other work is not using:
  the cores in the process's CPU affinity minus the one-minute load average, at least one,
  at most PyTorch's own default.

The Python API leaves PyTorch's setting alone; call :func:`use_threads` to get the same
choice as the command line.
"""

from __future__ import annotations

import os

import torch

from pirf.errors import PirfError, option

_TORCH_DEFAULT = torch.get_num_threads()
"""PyTorch's count at import time (one per physical core unless OMP_NUM_THREADS says)."""


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Cores other work keeps busy: the one-minute load average (0 where unknown)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def default_threads() -> int:
    """The thread count chosen when none is given (see the module docstring)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    free = usable_cores() - round(busy_cores())
    return max(1, min(free, _TORCH_DEFAULT))


def use_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op thread count to ``threads`` (default: :func:`default_threads`);
    returns the count in use."""
    if threads is None:
        threads = default_threads()
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise PirfError(f"{option('threads')} must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


__all__ = ["busy_cores", "default_threads", "usable_cores", "use_threads"]
