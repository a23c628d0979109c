"""Random draws of a run: pure functions of (seed, iteration), independent of the layout."""

from __future__ import annotations

import torch

from pirf.training.draws import Draws


def test_each_epoch_visits_every_sample_once() -> None:
    draws = Draws(3, n_data=10, batch=4)
    order = torch.cat([draws.indices(i) for i in range(5)])  # 20 positions: two epochs
    assert sorted(order[:10].tolist()) == list(range(10))
    assert sorted(order[10:].tolist()) == list(range(10))
    assert order[:10].tolist() != order[10:].tolist()  # a new permutation per epoch


def test_draws_are_pure_and_seed_dependent() -> None:
    a, b = Draws(3, n_data=10, batch=4), Draws(3, n_data=10, batch=4)
    assert torch.equal(a.indices(7), b.indices(7))
    assert a.dropout_seed(7) == b.dropout_seed(7) != a.dropout_seed(8)
    assert not torch.equal(Draws(4, n_data=10, batch=4).indices(0), a.indices(0))


def test_processes_split_the_global_batch() -> None:
    single = Draws(1, n_data=12, batch=6)
    ranks = [Draws(1, n_data=12, batch=6, world=3, rank=r) for r in range(3)]
    for iteration in (0, 3):
        joined = torch.cat([d.indices(iteration) for d in ranks])
        assert torch.equal(joined, single.indices(iteration))
        noise = [torch.randn(2, generator=g) for d in ranks for g in d.noise_generators(iteration)]
        expected = [torch.randn(2, generator=g) for g in single.noise_generators(iteration)]
        assert all(torch.equal(x, y) for x, y in zip(noise, expected, strict=True))
