"""The learning-rate schedule against values computed by hand."""

from __future__ import annotations

import math

import pytest

from pirf.training.schedule import learning_rate


def rate(iteration: int) -> float:
    return learning_rate(iteration, base=1e-3, warmup=4, total=14, final_ratio=0.1)


def test_warmup_is_linear_and_reaches_the_base_rate() -> None:
    assert [rate(i) for i in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])


def test_cosine_decay_from_base_to_floor() -> None:
    # decay spans steps 4..13 (9 intervals): step 4 is the peak, step 13 the floor
    assert rate(4) == pytest.approx(1e-3)
    assert rate(13) == pytest.approx(1e-4)
    for i in range(4, 14):
        expected = 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * (i - 4) / 9))
        assert rate(i) == pytest.approx(expected, rel=1e-12)
    assert rate(9) < rate(8)  # monotone decay
    assert rate(50) == pytest.approx(1e-4)  # beyond the end: stays at the floor


def test_degenerate_lengths() -> None:
    # a run no longer than its warm-up never decays; a one-step run uses the floor after it
    assert learning_rate(0, base=1.0, warmup=1, total=1, final_ratio=0.0) == 1.0
    assert learning_rate(1, base=1.0, warmup=1, total=2, final_ratio=0.0) == 0.0
    assert learning_rate(0, base=1.0, warmup=0, total=3, final_ratio=0.0) == 1.0
