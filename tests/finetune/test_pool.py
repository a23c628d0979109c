"""Amortised trajectories: the state pool's bookkeeping, and a pooled run that resumes
bitwise."""

from __future__ import annotations

import pytest
import torch

from pirf.errors import PirfError
from pirf.finetune import FinetuneConfig, finetune
from pirf.finetune.config import resolve
from pirf.finetune.pool import StatePool
from pirf.models import load_checkpoint
from pirf.training import weights_fingerprint
from tests.finetune.test_run import BOOKKEEPING, config, make_base, train_records


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory)


def _maker(log: list[torch.Tensor]):
    def make(noise: torch.Tensor) -> torch.Tensor:
        log.append(noise)
        return 2.0 * noise  # a stand-in for the sampler steps

    return make


def test_pool_fills_once_then_replaces_the_oldest_states():
    made: list[torch.Tensor] = []
    pool = StatePool(8, 2, (1, 3, 3), seed=5)
    states, count = pool.draw(0, 4, _maker(made))
    assert count == 8 and made[0].shape == (8, 1, 3, 3) and states.shape == (4, 1, 3, 3)
    for iteration in range(1, 9):
        _, count = pool.draw(iteration, 4, _maker(made))
        assert count == 2
        # a state lives size / refresh = 4 iterations: the oldest is 3 iterations old
        assert int((iteration - pool.born).max()) == min(iteration, 3)
    # every state came from its own noise, never reused
    noise = torch.cat(made).flatten(1)
    assert torch.unique(noise, dim=0).shape[0] == noise.shape[0] == 8 + 8 * 2
    # the batch is drawn from the pool's current states
    states, _ = pool.draw(9, 4, _maker(made))
    assert all(any(torch.equal(s, t) for t in pool.states) for s in states)


def test_pool_draws_are_keyed_by_seed_and_iteration_and_survive_a_round_trip():
    a, b = StatePool(6, 3, (2,), seed=1), StatePool(6, 3, (2,), seed=1)
    for iteration in range(3):
        first, _ = a.draw(iteration, 3, lambda n: n)
        second, _ = b.draw(iteration, 3, lambda n: n)
        assert torch.equal(first, second)
    restored = StatePool(6, 3, (2,), seed=1)
    restored.load(a.state())
    assert torch.equal(restored.draw(3, 3, lambda n: n)[0], a.draw(3, 3, lambda n: n)[0])
    other = StatePool(6, 3, (2,), seed=2)
    assert not torch.equal(other.draw(0, 3, lambda n: n)[0], StatePool(6, 3, (2,), seed=1)
                           .draw(0, 3, lambda n: n)[0])  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pool": 2}, "smaller than batch"),
        ({"pool": 8, "mode": "full"}, "needs mode draft"),
        ({"pool": 8, "random_steps": (6, 8)}, "needs mode draft"),
        ({"pool": 8, "pool_refresh": 9}, "pool_refresh must lie in 1..8"),
        ({"pool": -1}, "pool must be positive"),
    ],
)
def test_bad_pool_settings_are_refused(base, tmp_path, changes, message):
    with pytest.raises(PirfError, match=message):
        resolve(config(base, tmp_path / "run", **changes))


def test_pooled_run_makes_fewer_starts_and_resumes_bitwise(base, tmp_path):
    pooled = {"pool": 8, "pool_refresh": 1}
    straight = finetune(config(base, tmp_path / "a", **pooled))
    # 8 states on the first iteration, then one per iteration (plain DRaFT-K: 4 each)
    assert straight["window_starts"] == 8 + 5 * 1
    plain = finetune(config(base, tmp_path / "plain"))
    assert plain["window_starts"] == 6 * 4
    first = finetune(config(base, tmp_path / "b", stop_at=4, **pooled))
    assert not first["completed"]
    resumed = finetune(FinetuneConfig.of(ckpt=base, out=tmp_path / "b", resume=True,
                                         **BOOKKEEPING))  # fmt: skip
    assert resumed["completed"] and resumed["window_starts"] == straight["window_starts"]
    a, b = (
        load_checkpoint(tmp_path / "a" / "checkpoint"),
        load_checkpoint(tmp_path / "b" / "checkpoint"),
    )
    assert weights_fingerprint(a.model) == weights_fingerprint(b.model)
    assert train_records(tmp_path / "a") == train_records(tmp_path / "b")
    # the pooled run took other steps than the plain one
    plain_model = load_checkpoint(tmp_path / "plain" / "checkpoint").model
    assert weights_fingerprint(a.model) != weights_fingerprint(plain_model)
