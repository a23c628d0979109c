"""Seeded initial noise: the same seed gives the same noise to every model.

Sample ``i`` of a seed draws from its own generator (stream :data:`SAMPLING_STREAM` of
:mod:`pirf.seeding`), in float64 on the CPU, so its noise does not depend on the batch it
is sampled in, the device or the model. Comparing methods on "the same seeds" means
exactly this.
"""

from __future__ import annotations

import torch

from pirf.seeding import stacked_normal, unit_generators

SAMPLING_STREAM = 16
"""Seed stream of sampler noise; disjoint from the data streams (train 0, test 1, val 2)."""


def initial_noise(
    n: int, shape: tuple[int, int, int], seed: int, *, start: int = 0
) -> torch.Tensor:
    """Unit-variance noise ``(n, C, H, W)``, float32 on the CPU, for samples
    ``start .. start + n - 1``; the samplers scale it by ``sigma_max``."""
    generators = unit_generators(seed, SAMPLING_STREAM, range(start, start + n))
    return stacked_normal(generators, tuple(shape), dtype=torch.float32)
