"""What a PDE problem observes: whole channels or random points of them.

An observation is written ``CHANNEL=all`` (the whole channel: ``a=all`` with the
coefficient known is the forward problem) or ``CHANNEL=POINTS`` (that many grid points of
the channel, drawn uniformly without repetition: ``u=500`` is the inverse problem from
sparse measurements of the solution). :func:`parse_observations` reads the words,
:func:`observation_mask` turns them into one boolean mask ``(C, H, W)`` shared by every
sample of a seed (each channel's points come from their own generator, stream
:data:`OBSERVATION_STREAM` of the seed, so adding a channel does not move the others).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pirf.errors import PirfError, option
from pirf.seeding import unit_generators

ALL = "all"
OBSERVATION_STREAM = 19
"""Seed stream of the observed points (disjoint from the data splits and sampler noise)."""


@dataclass(frozen=True)
class Observation:
    """One channel observed: wholly (``points is None``) or at ``points`` random points."""

    channel: str
    points: int | None

    @property
    def text(self) -> str:
        """As written on the command line: ``a=all``, ``u=500``."""
        return f"{self.channel}={ALL if self.points is None else self.points}"


def parse_observation(text: str) -> Observation:
    """``"CHANNEL=all"`` or ``"CHANNEL=POINTS"`` -> :class:`Observation` (the channel name
    is checked against a PDE by :func:`observation_mask`)."""
    channel, sep, amount = (part.strip() for part in text.partition("="))
    usage = f"{option('observe')} expects CHANNEL=all or CHANNEL=POINTS (e.g. u=500), got '{text}'"
    if not sep or not channel or not amount:
        raise PirfError(usage)
    if amount.lower() == ALL:
        return Observation(channel, None)
    try:
        points = int(amount)
    except ValueError:
        raise PirfError(usage) from None
    if points < 1:
        raise PirfError(f"{option('observe')} {text}: the number of points must be positive")
    return Observation(channel, points)


def parse_observations(texts: Sequence[str]) -> list[Observation]:
    """Every ``--observe`` word, each channel at most once, at least one."""
    observations = [parse_observation(text) for text in texts]
    if not observations:
        raise PirfError(f"give at least one {option('observe')} CHANNEL=all|POINTS")
    channels = [o.channel for o in observations]
    repeated = sorted({c for c in channels if channels.count(c) > 1})
    if repeated:
        raise PirfError(f"{option('observe')} names channel {repeated[0]} twice; give it once")
    return observations


def check_observations(
    observations: Sequence[Observation], channels: Sequence[str], resolution: tuple[int, int]
) -> None:
    """Every observed channel exists and asks for at most the grid's points."""
    size = resolution[0] * resolution[1]
    for observation in observations:
        if observation.channel not in channels:
            raise PirfError(
                f"{option('observe')} {observation.text}: the PDE has no channel "
                f"'{observation.channel}'; use one of {', '.join(channels)}"
            )
        if observation.points is not None and observation.points > size:
            raise PirfError(
                f"{option('observe')} {observation.text}: the grid has only {size} points; "
                f"use at most {size} or {observation.channel}=all"
            )


def observation_mask(
    observations: Sequence[Observation],
    channels: Sequence[str],
    resolution: tuple[int, int],
    seed: int,
) -> torch.Tensor:
    """The boolean mask ``(C, H, W)`` of the observed values: whole channels, or each
    channel's ``points`` grid points drawn without repetition from its own generator."""
    check_observations(observations, channels, resolution)
    height, width = resolution
    mask = torch.zeros(len(channels), height, width, dtype=torch.bool)
    for observation in observations:
        index = list(channels).index(observation.channel)
        if observation.points is None:
            mask[index] = True
            continue
        (generator,) = unit_generators(seed, OBSERVATION_STREAM, [index])
        chosen = torch.randperm(height * width, generator=generator)[: observation.points]
        mask[index].view(-1)[chosen] = True
    return mask


__all__ = [
    "ALL",
    "OBSERVATION_STREAM",
    "Observation",
    "check_observations",
    "observation_mask",
    "parse_observation",
    "parse_observations",
]
