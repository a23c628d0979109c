"""The guards that stop a failing fine-tuning run: drift of the loss, loss of fidelity."""

from __future__ import annotations

import json
import math

import pytest

from pirf.finetune import DriftGuard, FidelityGuard


def feed(guard: DriftGuard, losses) -> list[str | None]:
    return [guard.update(loss) for loss in losses]


def test_drift_guard_trips_when_the_loss_exceeds_the_factor_of_its_lowest():
    # window 1 and no grace: the smoothed loss is the loss, so the trip point is exact
    guard = DriftGuard(2.0, window=1, grace=0)
    losses = [4.0, 3.0, 2.0, 1.0, 1.5, 1.9, 2.0, 2.1, 2.5]
    reasons = feed(guard, losses)
    # 2.0 is exactly twice the lowest 1.0: not above it; 2.1 is the first above
    assert reasons[:7] == [None] * 7
    assert reasons[7] is not None and "drift guard" in reasons[7] and "1" in reasons[7]
    assert guard.lowest == 1.0 and guard.seen == len(losses)


def test_drift_guard_smooths_waits_and_ignores_non_finite_losses():
    guard = DriftGuard(3.0)  # window 10, grace 20 (the run's settings)
    assert feed(guard, [1.0] * 1000) == [None] * 1000  # constant never trips
    # a single spike is smoothed away: 1 + (20 - 1) / 10 = 2.9 < 3
    assert guard.update(20.0) is None
    assert guard.smoothed == pytest.approx(2.9, rel=1e-15)

    guard = DriftGuard(3.0)
    # a large start inside the grace period sets no lowest value
    assert feed(guard, [100.0] + [1.0] * 19) == [None] * 20
    assert math.isinf(guard.lowest)
    state = json.dumps(guard.state())
    assert feed(guard, [math.nan, math.inf, -math.inf]) == [None] * 3
    assert json.dumps(guard.state()) == state  # nothing counted, nothing smoothed

    # a steady rise: trips at the first smoothed value above 3 x the lowest, not before
    guard = DriftGuard(3.0, window=10, grace=2)
    losses = [2.0, 1.5, 1.0, 1.0, *[1.0 + 0.5 * i for i in range(1, 60)]]
    smoothed, lowest, expected = None, math.inf, None
    for index, loss in enumerate(losses):  # the rule of the docstring, written out
        smoothed = loss if smoothed is None else smoothed + (loss - smoothed) / 10
        if index >= 2:
            lowest = min(lowest, smoothed)
            if smoothed > 3 * lowest:
                expected = index
                break
    assert expected is not None and expected > 10
    reasons = feed(guard, losses[: expected + 1])
    assert reasons[:expected] == [None] * expected and reasons[expected] is not None


def test_drift_guard_state_round_trip_continues_identically():
    losses = [3.0, 2.0, 1.5, 1.2, 1.0, 1.1, 1.3, 1.6, 2.0, 2.6, 3.3, 4.1, 5.0, 6.0, 7.2]
    running = DriftGuard(2.0, window=3, grace=2)
    first = feed(running, losses[:6])
    restored = DriftGuard(2.0, window=3, grace=2)
    restored.load(json.loads(json.dumps(running.state())))  # as stored in checkpoint.json
    assert restored.state() == running.state()
    rest = feed(running, losses[6:])
    assert feed(restored, losses[6:]) == rest
    assert restored.state() == running.state()
    assert first == [None] * 6 and any(rest)  # the rest really trips
    # a fresh guard's state (no lowest yet) survives JSON too
    empty = DriftGuard(2.0)
    empty.load(json.loads(json.dumps(DriftGuard(2.0).state())))
    assert empty.smoothed is None and math.isinf(empty.lowest) and empty.seen == 0


def test_fidelity_guard_band():
    guard = FidelityGuard(1.5, {"mmd": 2.0, "diversity": 1.0})
    assert guard.inside({"mmd": 3.0, "diversity": 1.0}) and guard.inside({"mmd": 0.1})
    assert guard.inside({"mmd": None, "diversity": None})
    assert not guard.inside({"mmd": 3.0001, "diversity": 1.0})
    assert guard.check({"mmd": 3.0, "diversity": 1.5}) is None
    reason = guard.check({"mmd": 3.5, "diversity": 1.0})
    assert reason is not None and "mmd 3.5" in reason and "1.5 x" in reason and "2" in reason
    # samples that shrink (or spread) by more than the band leave it, whatever the MMD says
    assert guard.check({"mmd": 2.0, "diversity": 0.6667}) is None
    shrunk = guard.check({"mmd": 1.0, "diversity": 0.43})
    assert shrunk is not None and "diversity 0.43 is below 0.6667" in shrunk
    assert not guard.inside({"mmd": 1.0, "diversity": 1.51})
    # without a band or without the base model's values there is nothing to leave
    for unguarded in (FidelityGuard(None, {"mmd": 2.0, "diversity": 1.0}), FidelityGuard(1.5, {})):
        assert unguarded.inside({"mmd": 1e9, "diversity": 1e-9})
        assert unguarded.check({"mmd": 1e9, "diversity": 1e-9}) is None
