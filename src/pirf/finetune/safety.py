"""Gradient sanitising: a non-finite reward must not poison the weights.

A NaN or inf anywhere in the reward (a generated field the residual cannot handle, an
overflow in low precision) propagates into every gradient. :func:`sanitise_gradients`
replaces non-finite gradient entries by zero before the optimizer step and reports how
many there were, so the caller can log or stop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def sanitise_gradients(parameters: Iterable[torch.nn.Parameter]) -> int:
    """Set NaN and +-inf gradient entries to zero in place; return how many there were."""
    count = 0
    for parameter in parameters:
        grad = parameter.grad
        if grad is None:
            continue
        bad = int((~torch.isfinite(grad)).sum())
        if bad:
            count += bad
            torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0)
    return count


__all__ = ["sanitise_gradients"]
