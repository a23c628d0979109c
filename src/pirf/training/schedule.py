"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

The rate is a pure function of the iteration, so a resumed run needs no scheduler state:
the loop sets it on the optimizer before every step. Warm-up is short by default (5% of the
run); the reference code's warm-up was so long that its target rate was never reached.
"""

from __future__ import annotations

import math


def learning_rate(
    iteration: int, *, base: float, warmup: int, total: int, final_ratio: float
) -> float:
    """Rate of step ``iteration`` (0-based) of a ``total``-step run.

    Warm-up: ``base * (iteration + 1) / warmup`` for the first ``warmup`` steps, so the
    first step already moves and step ``warmup - 1`` runs at ``base``. Then cosine decay
    from ``base`` at step ``warmup`` to ``base * final_ratio`` at step ``total - 1``;
    later steps stay at the floor.
    """
    if iteration < warmup:
        return base * (iteration + 1) / warmup
    span = total - 1 - warmup
    progress = 1.0 if span <= 0 else min(1.0, (iteration - warmup) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base * (final_ratio + (1.0 - final_ratio) * cosine)


__all__ = ["learning_rate"]
