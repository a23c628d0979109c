"""Batches are the same whether they are prefetched in a thread or made on demand."""

from __future__ import annotations

import torch

from pirf.models import sample_training_noise
from pirf.training.batches import BatchSource
from pirf.training.draws import Draws


def test_prefetched_batches_equal_direct_ones() -> None:
    fields = torch.randn(10, 2, 4, 4)
    draws = Draws(5, n_data=10, batch=4)
    direct = BatchSource(fields, draws, torch.device("cpu"), prefetch=False)
    threaded = BatchSource(fields, draws, torch.device("cpu"), prefetch=True)
    try:
        for iteration in (0, 1, 2, 5, 6):  # a jump: the prefetched batch 3 is not used
            a, b = direct.get(iteration), threaded.get(iteration)
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    finally:
        threaded.close()
    # and they are what the draws say: the indexed fields with their samples' noise
    x, sigma, noise = direct.get(6)
    expected_x = fields[draws.indices(6)]
    expected_sigma, expected_noise = sample_training_noise(expected_x, draws.noise_generators(6))
    assert torch.equal(x, expected_x) and torch.equal(sigma, expected_sigma)
    assert torch.equal(noise, expected_noise)
