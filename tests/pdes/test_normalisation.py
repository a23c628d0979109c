"""Normalisation round-trips, has std 0.5 in model space, and streams statistics exactly."""

import pytest
import torch

from pirf.errors import PirfError
from pirf.pdes.normalisation import ChannelStats, Normalisation


def test_streaming_statistics_match_a_direct_computation():
    generator = torch.Generator().manual_seed(0)
    fields = torch.randn(37, 3, 5, 6, generator=generator, dtype=torch.float64) * 4 + 2
    stats = ChannelStats(3)
    for chunk in fields.split(5):
        stats.update(chunk)
    flat = fields.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(
        torch.tensor(stats.mean(), dtype=torch.float64), flat.mean(1), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        torch.tensor(stats.std(), dtype=torch.float64),
        flat.std(1, correction=0),
        rtol=1e-12,
        atol=1e-12,
    )
    assert stats.min() == flat.min(1).values.tolist()
    assert stats.max() == flat.max(1).values.tolist()
    assert stats.count == 37 * 5 * 6


def test_model_space_has_sigma_data_one_half_and_round_trips():
    fields = torch.randn(64, 2, 8, 8, dtype=torch.float64) * torch.tensor([3.0, 0.01]).view(
        1, 2, 1, 1
    ) + torch.tensor([7.5, -1.0]).view(1, 2, 1, 1)
    norm = Normalisation.from_fields(fields)
    model = norm.to_model(fields)
    torch.testing.assert_close(
        model.transpose(0, 1).reshape(2, -1).std(1, correction=0),
        torch.full((2,), 0.5, dtype=torch.float64),
    )
    torch.testing.assert_close(norm.to_physical(model), fields)
    assert Normalisation.from_json(norm.to_json()) == norm


def test_constant_channel_gets_unit_scale_and_bad_shapes_fail():
    fields = torch.ones(4, 1, 3, 3)
    assert Normalisation.from_fields(fields).scale == (1.0,)
    with pytest.raises(PirfError, match="expected fields"):
        Normalisation((0.0, 0.0), (1.0, 1.0)).to_model(torch.zeros(4, 3, 3, 3))
    with pytest.raises(PirfError, match="positive"):
        Normalisation((0.0,), (0.0,))
