"""Every random draw of a training run, as a pure function of ``(seed, iteration)``.

Resuming therefore needs no random-number state, and a run with several processes computes
exactly what one process computes on the whole batch:

* **Order.** Training samples are visited epoch by epoch in a random permutation per epoch
  (keyed by ``(seed, epoch)``). Step ``i`` takes the global positions
  ``i * batch ... (i + 1) * batch - 1`` of that endless sequence; process ``r`` of ``w``
  takes its contiguous ``batch / w`` of them (its data shard for the step).
* **Noise.** The noise level and noise field of the sample at global position ``p`` come
  from its own generator keyed by ``(seed, p)`` (:func:`pirf.seeding.unit_generators`), so
  they do not depend on the number of processes either.
* **Dropout.** The global generator is re-seeded from ``(seed, iteration, rank)`` before
  each forward pass (dropout masks do depend on the process layout).
* **Initialisation.** Weights are drawn on the CPU from ``(seed, 0)``, identically on every
  process and device.

Streams (``pirf.seeding``) keep these draws disjoint from each other and from the data
splits (streams 0-2), even when the data and the run share a seed.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from pirf.seeding import unit_generators, unit_seed

STREAM_INIT = 100
STREAM_ORDER = 101
STREAM_NOISE = 102
STREAM_DROPOUT = 103


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits ``n`` samples."""
    generator = torch.Generator().manual_seed(unit_seed(seed, STREAM_ORDER, epoch))
    return torch.randperm(n, generator=generator)


class Draws:
    """The random draws of one process (``rank`` of ``world``) of a run."""

    def __init__(self, seed: int, *, n_data: int, batch: int, world: int = 1, rank: int = 0):
        if batch % world:
            raise ValueError(f"batch {batch} is not divisible by {world} processes")
        self.seed = seed
        self.n_data = n_data
        self.batch = batch
        self.world = world
        self.rank = rank
        self.local_batch = batch // world

    def positions(self, iteration: int) -> list[int]:
        """Global positions in the sample sequence that this process trains on at a step."""
        start = iteration * self.batch + self.rank * self.local_batch
        return list(range(start, start + self.local_batch))

    def indices(self, iteration: int) -> torch.Tensor:
        """Dataset indices of this process's batch at step ``iteration``."""
        chosen = []
        for position in self.positions(iteration):
            epoch, offset = divmod(position, self.n_data)
            chosen.append(epoch_permutation(self.seed, epoch, self.n_data)[offset])
        return torch.stack(chosen)

    def noise_generators(self, iteration: int) -> list[torch.Generator]:
        """One CPU generator per sample of this process's batch (noise level and field)."""
        return unit_generators(self.seed, STREAM_NOISE, self.positions(iteration))

    def dropout_seed(self, iteration: int) -> int:
        """Seed of the global generator for the forward pass of step ``iteration``."""
        return unit_seed(self.seed, STREAM_DROPOUT, iteration * self.world + self.rank)

    def init_seed(self) -> int:
        """Seed of the global generator while the network is built."""
        return unit_seed(self.seed, STREAM_INIT, 0)


__all__ = [
    "STREAM_DROPOUT",
    "STREAM_INIT",
    "STREAM_NOISE",
    "STREAM_ORDER",
    "Draws",
    "epoch_permutation",
]
