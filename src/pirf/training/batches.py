"""Training batches: this process's samples of a step with their noise, ready on the device.

A batch is a pure function of the iteration (:class:`pirf.training.draws.Draws`): the
normalised fields at the step's indices, and per sample a noise level and a noise field
drawn on the CPU from the sample's own generator. On a GPU those CPU draws would stall
every step, so the next step's batch is prepared in a background thread while the current
one trains (torch releases the GIL in its kernels); on the CPU batches are made in place,
where a second thread would only compete for the same cores. Either way the numbers are
the same.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from pirf.models import sample_training_noise
from pirf.training.draws import Draws

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(x, sigma, noise)``: fields ``(b, C, H, W)``, noise levels ``(b,)``, noise like ``x``."""


class BatchSource:
    """Batches of one process, prefetched one step ahead on CUDA."""

    def __init__(
        self,
        fields: torch.Tensor,
        draws: Draws,
        device: torch.device,
        *,
        channels_last: bool = False,
        prefetch: bool | None = None,
    ) -> None:
        """``fields``: the whole normalised training set ``(N, C, H, W)`` on the CPU;
        ``prefetch``: prepare the next batch in a thread (default: on CUDA only)."""
        self.fields = fields
        self.draws = draws
        self.device = device
        self.channels_last = channels_last
        if prefetch is None:
            prefetch = device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
        self._pending: tuple[int, Future[Batch]] | None = None

    def _cpu_batch(self, iteration: int) -> Batch:
        x = self.fields[self.draws.indices(iteration)]
        sigma, noise = sample_training_noise(x, self.draws.noise_generators(iteration))
        if self.device.type == "cuda":
            x, sigma, noise = x.pin_memory(), sigma.pin_memory(), noise.pin_memory()
        return x, sigma, noise

    def get(self, iteration: int, *, prefetch_next: bool = True) -> Batch:
        """The batch of step ``iteration`` on the device (and start preparing the next)."""
        if self._pending is not None and self._pending[0] == iteration:
            batch = self._pending[1].result()
        else:
            batch = self._cpu_batch(iteration)
        self._pending = None
        if self._pool is not None and prefetch_next:
            self._pending = (iteration + 1, self._pool.submit(self._cpu_batch, iteration + 1))
        x, sigma, noise = (t.to(self.device, non_blocking=True) for t in batch)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            noise = noise.contiguous(memory_format=torch.channels_last)
        return x, sigma, noise

    def close(self) -> None:
        """Stop the background thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


__all__ = ["Batch", "BatchSource"]
