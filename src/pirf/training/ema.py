"""Exponential moving average of the weights, with EDM's half-life convention.

The averaging speed is given as a half-life in *training samples*, not steps, so it does
not depend on the batch size: after one step of ``batch`` samples the old average keeps
the weight ``beta = 0.5 ** (batch / halflife)``. Early in training the half-life is capped
at ``rampup`` times the samples seen so far (EDM's ramp-up), so the average follows the
fast-changing early weights instead of remembering the random initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(samples_seen: int, batch: int, *, halflife: float, rampup: float | None) -> float:
    """Weight of the old average in the update after ``samples_seen`` samples (this step's
    ``batch`` included). ``halflife`` 0 makes the average a copy of the weights."""
    if rampup:
        halflife = min(halflife, samples_seen * rampup)
    if halflife <= 0:
        return 0.0
    return 0.5 ** (batch / halflife)


class EMA:
    """A frozen copy of a model whose parameters track the model's as a moving average."""

    def __init__(self, model: nn.Module, *, halflife: float, rampup: float | None) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.halflife = float(halflife)
        self.rampup = rampup

    @torch.no_grad()
    def update(self, model: nn.Module, *, samples_seen: int, batch: int) -> float:
        """Move the average toward ``model``; returns the ``beta`` used.

        Parameters: ``average = beta * average + (1 - beta) * weights``; buffers are copied.
        """
        beta = ema_beta(samples_seen, batch, halflife=self.halflife, rampup=self.rampup)
        for average, weights in zip(self.model.parameters(), model.parameters(), strict=True):
            average.lerp_(weights.detach(), 1.0 - beta)
        for average, weights in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(weights)
        return beta


__all__ = ["EMA", "ema_beta"]
