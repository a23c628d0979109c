"""Per-channel affine map between physical units and the model's space.

``model = (physical - shift) / scale``, with ``shift`` the channel mean and ``scale`` twice
the channel standard deviation of the training data, so each channel has standard deviation
0.5 in model space: the ``sigma_data`` that EDM preconditioning assumes, and values mostly in
[-1, 1]. The constants are computed from data, stored in every dataset file and copied into
every model checkpoint, so a model never depends on constants hard-coded in the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pirf.errors import PirfError


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``shift`` and ``scale`` (physical units)."""

    shift: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shift) != len(self.scale):
            raise PirfError("normalisation shift and scale have different lengths")
        if any(not s > 0 for s in self.scale):
            raise PirfError(f"normalisation scale must be positive, got {list(self.scale)}")

    @property
    def channels(self) -> int:
        return len(self.shift)

    def _broadcast(self, values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        if like.ndim < 3 or like.shape[-3] != self.channels:
            raise PirfError(
                f"expected fields (..., {self.channels}, H, W), got shape {tuple(like.shape)}"
            )
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)

    def to_model(self, physical: torch.Tensor) -> torch.Tensor:
        """Physical units -> model space."""
        return (physical - self._broadcast(self.shift, physical)) / self._broadcast(
            self.scale, physical
        )

    def to_physical(self, model: torch.Tensor) -> torch.Tensor:
        """Model space -> physical units (differentiable)."""
        return model * self._broadcast(self.scale, model) + self._broadcast(self.shift, model)

    def to_json(self) -> dict[str, Any]:
        return {"shift": list(self.shift), "scale": list(self.scale)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalisation:
        return cls(tuple(float(v) for v in data["shift"]), tuple(float(v) for v in data["scale"]))

    @classmethod
    def from_stats(cls, stats: ChannelStats) -> Normalisation:
        """Mean and twice the standard deviation of each channel (scale 1 for a constant)."""
        std = stats.std()
        scale = tuple(2.0 * s if s > 0 else 1.0 for s in std)
        return cls(tuple(stats.mean()), scale)

    @classmethod
    def from_fields(cls, fields: torch.Tensor) -> Normalisation:
        """Normalisation of a batch ``(N, C, H, W)`` held in memory."""
        stats = ChannelStats(fields.shape[1])
        stats.update(fields)
        return cls.from_stats(stats)


class ChannelStats:
    """Streaming per-channel count, mean, standard deviation, minimum and maximum.

    Sums are accumulated in float64 over chunks, so a dataset never has to fit in memory.
    Uses Chan's parallel update of mean and squared deviations (stable for large counts).
    """

    def __init__(self, channels: int) -> None:
        self.count = 0
        self._mean = torch.zeros(channels, dtype=torch.float64)
        self._m2 = torch.zeros(channels, dtype=torch.float64)
        self._min = torch.full((channels,), float("inf"), dtype=torch.float64)
        self._max = torch.full((channels,), float("-inf"), dtype=torch.float64)

    def update(self, fields: torch.Tensor) -> None:
        """Add a chunk ``(N, C, H, W)``."""
        chunk = fields.detach().to(torch.float64).transpose(0, 1).reshape(fields.shape[1], -1)
        n = chunk.shape[1]
        if n == 0:
            return
        chunk_mean = chunk.mean(dim=1).cpu()
        chunk_m2 = ((chunk - chunk.mean(dim=1, keepdim=True)) ** 2).sum(dim=1).cpu()
        total = self.count + n
        delta = chunk_mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + chunk_m2 + delta**2 * (self.count * n / total)
        self.count = total
        self._min = torch.minimum(self._min, chunk.min(dim=1).values.cpu())
        self._max = torch.maximum(self._max, chunk.max(dim=1).values.cpu())

    def mean(self) -> list[float]:
        return self._mean.tolist()

    def std(self) -> list[float]:
        if self.count == 0:
            return [0.0] * len(self._mean)
        return (self._m2 / self.count).clamp_min(0).sqrt().tolist()

    def min(self) -> list[float]:
        return self._min.tolist()

    def max(self) -> list[float]:
        return self._max.tolist()
