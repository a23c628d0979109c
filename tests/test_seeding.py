"""Seeds depend only on (seed, stream, index), and streams never collide."""

import pytest
import torch

from pirf.seeding import stacked_normal, stream_id, unit_generators, unit_seed


def test_unit_seed_is_a_pure_function_of_its_key():
    assert unit_seed(3, "train", 7) == unit_seed(3, 0, 7)
    assert unit_seed(3, "train", 7) != unit_seed(3, "test", 7)
    assert unit_seed(3, "train", 7) != unit_seed(4, "train", 7)
    assert unit_seed(3, "train", 7) != unit_seed(3, "train", 8)


def test_streams_are_disjoint_over_many_indices():
    train = {unit_seed(0, "train", i) for i in range(2000)}
    test = {unit_seed(0, "test", i) for i in range(2000)}
    assert len(train) == 2000 and not train & test


def test_draws_do_not_depend_on_batch_composition():
    together = stacked_normal(unit_generators(5, "val", range(6)), (4, 4))
    alone = torch.cat([stacked_normal(unit_generators(5, "val", [i]), (4, 4)) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=0, atol=0)


def test_bad_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        stream_id("holdout")
    with pytest.raises(ValueError):
        unit_seed(-1, 0, 0)
