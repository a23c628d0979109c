"""Several processes, one run: ``torch.distributed`` set-up for ``torchrun``.

``torchrun --nproc-per-node N -m pirf.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`setup` reads them, joins the process
group (NCCL on CUDA, gloo on CPU) and picks the device (``cuda:LOCAL_RANK`` on GPUs).
Gradients are averaged by ``DistributedDataParallel``; rank 0 alone writes files.
Without these variables the run is a single process and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pirf.devices import resolve_device
from pirf.errors import PirfError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    owns_group: bool
    """Whether :func:`setup` created the process group (and :func:`shutdown` ends it)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, metrics and figures."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise PirfError(f"environment variable {name}={value!r} is not an integer") from None


def setup(device: str) -> DistContext:
    """Join the process group described by the environment (if any) and pick the device."""
    if dist.is_available() and dist.is_initialized():
        rank, world, owns = dist.get_rank(), dist.get_world_size(), False
        local_rank = _env_int("LOCAL_RANK", rank)
    else:
        world = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", rank)
        owns = world > 1
    chosen = resolve_device(device)
    if world > 1 and chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if owns:
        if not dist.is_available():
            raise PirfError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, chosen, owns)


def shutdown(context: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(values: torch.Tensor, context: DistContext) -> torch.Tensor:
    """The average of ``values`` over all processes (a copy; unchanged for one process)."""
    values = values.detach().clone()
    if context.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= context.world
    return values


def barrier(context: DistContext) -> None:
    """Wait for every process (no-op for one process)."""
    if context.distributed:
        dist.barrier()


__all__ = ["DistContext", "barrier", "mean_over_processes", "setup", "shutdown"]
