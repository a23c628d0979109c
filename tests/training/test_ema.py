"""The EMA against its closed form: a constant target is approached as 1 - beta^k."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pirf.training.ema import EMA, ema_beta


def test_beta_is_the_half_life_in_samples() -> None:
    # one batch the size of the half-life halves the old average's weight
    assert ema_beta(10**6, 32, halflife=32, rampup=None) == pytest.approx(0.5)
    assert ema_beta(10**6, 16, halflife=32, rampup=None) == pytest.approx(2**-0.5)
    # ramp-up: after 100 samples with ratio 0.1 the half-life is 10 samples
    assert ema_beta(100, 10, halflife=1000, rampup=0.1) == pytest.approx(0.5)
    assert ema_beta(10, 10, halflife=0, rampup=None) == 0.0


def test_average_of_a_constant_target() -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    ema = EMA(model, halflife=8.0, rampup=None)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    for step in range(1, 6):
        beta = ema.update(model, samples_seen=4 * step, batch=4)
        assert beta == pytest.approx(0.5**0.5)
    expected = 1 - (0.5**0.5) ** 5
    for p in ema.model.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected), rtol=1e-6, atol=0)
        assert not p.requires_grad


def test_rampup_follows_early_weights() -> None:
    model = nn.Linear(1, 1, bias=False)
    ema = EMA(model, halflife=1e6, rampup=0.05)
    with torch.no_grad():
        model.weight.fill_(2.0)
    # after the first batch of 10 samples the half-life is 0.5 sample: beta = 2^-20
    beta = ema.update(model, samples_seen=10, batch=10)
    assert beta == pytest.approx(2.0**-20)
    assert ema.model.weight.item() == pytest.approx(2.0, rel=1e-5)
