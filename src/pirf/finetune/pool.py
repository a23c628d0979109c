"""Amortised trajectories: a pool of window-start states shared across iterations.

A DRaFT-K iteration spends most of its time on the ``N - K`` sampler steps without
gradient that only produce the state entering the differentiable window (about 90 % of an
iteration at K = 2 on a CPU). :class:`StatePool` keeps ``size`` such states, made with
recent weights, and replaces the ``refresh`` oldest ones each iteration with states from
fresh noise and the current weights; the iteration's batch is drawn from the whole pool.
A state is at most ``size / refresh`` iterations old, and the window itself always runs
with the current weights, so only the window's *starting distribution* lags behind the
model (docs/finetune.md measures what that costs in gradient direction).

Everything is keyed by the run's seed: the noise of the ``i``-th state ever made, and the
choice of the iteration's batch. The pool is part of the run's state (checkpoints hold
it), so a resumed run continues bitwise as if never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pirf.errors import PirfError, option
from pirf.seeding import unit_seed

POOL_STREAM = 36
"""Seed stream of the pool's noise; the next one draws each iteration's batch."""


class StatePool:
    """``size`` window-start states of shape ``shape``; see the module docstring.

    ``make(noise) -> states`` runs the sampler steps without gradient from unit noise with
    the current weights. ``rank`` keys the draws of one process of a distributed run (each
    process keeps its own pool).
    """

    def __init__(
        self,
        size: int,
        refresh: int,
        shape: tuple[int, ...],
        *,
        seed: int,
        rank: int = 0,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PirfError(f"{option('pool')} must be a positive integer, got {size!r}")
        if isinstance(refresh, bool) or not isinstance(refresh, int) or not 1 <= refresh <= size:
            raise PirfError(
                f"{option('pool_refresh')} must be an integer in 1..{size} (the pool), "
                f"got {refresh!r}"
            )
        self.size, self.refresh, self.shape = size, refresh, tuple(shape)
        self.seed, self.rank = seed, rank
        self.states: torch.Tensor | None = None
        self.born = torch.zeros(size, dtype=torch.int64)
        """The iteration that made each state (its age is the current iteration minus it)."""
        self.made = 0
        """States made so far: the key of the next one's noise."""
        self.cursor = 0
        """The slot the next refresh starts at (the oldest state)."""

    def _noise(self, count: int) -> torch.Tensor:
        """Unit noise of the next ``count`` states, one generator per state."""
        noise = torch.empty((count, *self.shape))
        for offset in range(count):
            key = (self.made + offset) * 1_000_003 + self.rank
            generator = torch.Generator().manual_seed(unit_seed(self.seed, POOL_STREAM, key))
            noise[offset] = torch.randn(self.shape, generator=generator)
        self.made += count
        return noise

    def draw(
        self,
        iteration: int,
        batch: int,
        make: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, int]:
        """The iteration's ``batch`` window-start states, and how many states were made
        for it (the whole pool on first use, else ``refresh``)."""
        if batch > self.size:
            raise PirfError(
                f"the batch per process ({batch}) exceeds {option('pool')} {self.size}"
            )
        if self.states is None:
            self.states = make(self._noise(self.size)).detach()
            self.born.fill_(iteration)
            made = self.size
        else:
            slots = (self.cursor + torch.arange(self.refresh)) % self.size
            fresh = make(self._noise(self.refresh)).detach()
            self.states[slots] = fresh.to(self.states.dtype)
            self.born[slots] = iteration
            self.cursor = int((self.cursor + self.refresh) % self.size)
            made = self.refresh
        key = iteration * 1_000_003 + self.rank
        generator = torch.Generator().manual_seed(unit_seed(self.seed, POOL_STREAM + 1, key))
        chosen = torch.randperm(self.size, generator=generator)[:batch]
        chosen = chosen.to(self.states.device)
        return self.states[chosen].clone(), made

    def age(self, iteration: int) -> float:
        """Mean age of the pool's states in iterations (0 before first use)."""
        if self.states is None:
            return 0.0
        return float((iteration - self.born).double().mean())

    def state(self) -> dict[str, Any]:
        """What :meth:`load` needs to continue exactly."""
        state: dict[str, Any] = {
            "born": self.born.clone(),
            "made": self.made,
            "cursor": self.cursor,
        }
        if self.states is not None:
            state["states"] = self.states.detach().cpu().clone()
        return state

    def load(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore :meth:`state`."""
        self.born = state["born"].to(torch.int64).clone()
        self.made = int(state["made"])
        self.cursor = int(state["cursor"])
        states = state.get("states")
        self.states = None if states is None else states.to(device).clone()


__all__ = ["POOL_STREAM", "StatePool"]
