"""Seeds for reproducible, chunking-independent random draws.

Every random unit of work (one sample, or one trajectory) gets its own generator whose seed
is derived from ``(seed, stream, index)``. A unit's random numbers therefore depend only on
its own key, never on the batch it is computed in, the order of work or the device.
Streams keep splits disjoint: the train, validation and test sets of one seed never share
a key.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

STREAMS: dict[str, int] = {"train": 0, "test": 1, "val": 2}
"""Named streams; any other non-negative integer is a valid stream too."""


def stream_id(stream: str | int) -> int:
    """Return the integer stream for a split name (``train``, ``test``, ``val``) or an int."""
    if isinstance(stream, int):
        if stream < 0:
            raise ValueError(f"stream must be non-negative, got {stream}")
        return stream
    try:
        return STREAMS[stream]
    except KeyError:
        raise ValueError(f"unknown split {stream!r}; use one of {', '.join(STREAMS)}") from None


def unit_seed(seed: int, stream: str | int, index: int) -> int:
    """A 63-bit seed for unit ``index`` of ``stream`` under the user's ``seed``.

    Uses numpy's SeedSequence hashing, so nearby keys give statistically independent seeds.
    """
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    state = np.random.SeedSequence([seed, stream_id(stream), index]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0] >> np.uint64(1))


def unit_generators(seed: int, stream: str | int, indices: Iterable[int]) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per unit index, each seeded by :func:`unit_seed`."""
    generators = []
    for index in indices:
        generator = torch.Generator(device="cpu")
        generator.manual_seed(unit_seed(seed, stream, int(index)))
        generators.append(generator)
    return generators


def stacked_normal(
    generators: list[torch.Generator], shape: tuple[int, ...], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Stack one standard-normal draw of ``shape`` per generator: shape ``(len, *shape)``.

    Draws happen on the CPU in float64 so that the numbers are identical on every machine;
    move the result to the compute device afterwards.
    """
    draws = [torch.randn(shape, generator=g, dtype=torch.float64) for g in generators]
    return torch.stack(draws).to(dtype)
