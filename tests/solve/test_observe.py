"""What is observed: the words, the mask, its seeding."""

from __future__ import annotations

import pytest
import torch

from pirf.errors import PirfError
from pirf.solve.observe import Observation, observation_mask, parse_observations

CHANNELS = ("a", "u")


def test_words_become_observations():
    observations = parse_observations(["a=all", " u = 500 "])
    assert observations == [Observation("a", None), Observation("u", 500)]
    assert [o.text for o in observations] == ["a=all", "u=500"]
    assert parse_observations(["u=ALL"]) == [Observation("u", None)]


@pytest.mark.parametrize(
    ("words", "match"),
    [
        ([], "at least one"),
        (["u"], "CHANNEL=all"),
        (["u=many"], "CHANNEL=all"),
        (["=5"], "CHANNEL=all"),
        (["u=0"], "positive"),
        (["u=5", "u=all"], "twice"),
    ],
)
def test_bad_words_are_refused(words, match):
    with pytest.raises(PirfError, match=match):
        parse_observations(words)


def test_mask_observes_whole_channels_and_seeded_points():
    mask = observation_mask(parse_observations(["a=all", "u=10"]), CHANNELS, (6, 5), seed=3)
    assert mask.dtype == torch.bool and mask.shape == (2, 6, 5)
    assert bool(mask[0].all()) and int(mask[1].sum()) == 10
    alone = observation_mask(parse_observations(["u=10"]), CHANNELS, (6, 5), seed=3)
    assert torch.equal(alone[1], mask[1]) and not bool(alone[0].any())
    assert torch.equal(
        mask, observation_mask(parse_observations(["u=10", "a=all"]), CHANNELS, (6, 5), 3)
    )
    other = observation_mask(parse_observations(["u=10"]), CHANNELS, (6, 5), seed=4)
    assert not torch.equal(other[1], alone[1])
    every = observation_mask(parse_observations(["u=30"]), CHANNELS, (6, 5), seed=3)
    assert bool(every[1].all())


def test_mask_checks_channels_and_sizes():
    with pytest.raises(PirfError, match="no channel 'v'"):
        observation_mask(parse_observations(["v=all"]), CHANNELS, (4, 4), 0)
    with pytest.raises(PirfError, match="only 16 points"):
        observation_mask(parse_observations(["u=17"]), CHANNELS, (4, 4), 0)
