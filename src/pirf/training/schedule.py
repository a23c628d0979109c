"""The optimiser of every run: Adam, and its learning rate (linear warm-up, cosine decay).

Base training, PIRF fine-tuning and the trained baselines share these. The rate is a pure
function of the iteration, so a resumed run needs no scheduler state: the run loop sets it
on the optimizer before every step. Warm-up is short by default (5 % of the run); the
reference code's warm-up was so long that its target rate was never reached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def adam(parameters: Iterable[Any], lr: float) -> Any:
    """Adam with pirf's betas and epsilon over ``parameters``."""
    import torch

    return torch.optim.Adam(parameters, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)


def set_learning_rate(optimizer: Any, lr: float) -> None:
    """Set ``lr`` on every parameter group of ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = lr


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


def scheduled_rate(optimiser: Any, iteration: int) -> float:
    """The rate of step ``iteration`` for a resolved optimiser section
    (:class:`pirf.training.sections.Optimiser`)."""
    return learning_rate(
        iteration,
        base=optimiser.lr,
        warmup=optimiser.warmup,
        total=optimiser.iters,
        final_ratio=optimiser.lr_final_ratio,
    )


__all__ = [
    "ADAM_BETAS",
    "ADAM_EPS",
    "adam",
    "learning_rate",
    "scheduled_rate",
    "set_learning_rate",
]
