"""Where the values of a field array live in physical space.

A field is a tensor ``(..., H, W)``; dimension -2 is the grid's first axis, dimension -1
its second. Each axis is either

* ``endpoint=True``: nodes that include both ends, spacing ``L / (n - 1)`` (Dirichlet
  problems: boundary nodes are stored);
* ``endpoint=False``: ``n`` points ``lower + j L / n``; with ``periodic=True`` the upper end
  is the lower end again (spectral and periodic problems), otherwise the axis simply stops
  one step short of ``upper`` (Burgers' time axis).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Grid:
    """Axis names, extents and conventions of a two-dimensional field."""

    axes: tuple[str, str]
    lower: tuple[float, float]
    upper: tuple[float, float]
    periodic: tuple[bool, bool]
    endpoint: tuple[bool, bool]

    def spacing(self, shape: tuple[int, int]) -> tuple[float, float]:
        """Grid spacing along both axes for an array of spatial ``shape`` ``(H, W)``."""
        steps = []
        for axis, n in enumerate(shape):
            length = self.upper[axis] - self.lower[axis]
            steps.append(length / (n - 1) if self.endpoint[axis] else length / n)
        return steps[0], steps[1]

    def coordinates(
        self,
        shape: tuple[int, int],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-dimensional coordinate vectors of both axes."""
        spacing = self.spacing(shape)
        return tuple(  # type: ignore[return-value]
            self.lower[axis] + spacing[axis] * torch.arange(n, dtype=dtype, device=device)
            for axis, n in enumerate(shape)
        )

    def mesh(
        self,
        shape: tuple[int, int],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinate arrays of shape ``(H, W)`` (``indexing='ij'``)."""
        first, second = self.coordinates(shape, dtype=dtype, device=device)
        return torch.meshgrid(first, second, indexing="ij")  # type: ignore[return-value]

    def describe(self, shape: tuple[int, int]) -> list[str]:
        """One line per axis saying where its values live, e.g. ``"x: 32 nodes including
        the boundary of [0, 1], h = 1/(R-1) = 0.03226"``: what a user compares against an
        external dataset's own convention (nodes, cell centres, periodic points)."""
        lines = []
        for axis, n in enumerate(shape):
            name, lower, upper = self.axes[axis], self.lower[axis], self.upper[axis]
            step = self.spacing(shape)[axis]
            if self.endpoint[axis]:
                where = f"{n} nodes including the boundary of [{lower:g}, {upper:g}]"
                rule = "h = L/(R-1)" if upper - lower != 1 else "h = 1/(R-1)"
            elif self.periodic[axis]:
                where = f"{n} periodic points of [{lower:g}, {upper:g}) without the repeated end"
                rule = "h = L/R" if upper - lower != 1 else "h = 1/R"
            else:
                where = f"{n} points of [{lower:g}, {upper:g}) from the lower end, one step short"
                where += " of the upper"
                rule = "h = L/R" if upper - lower != 1 else "h = 1/R"
            lines.append(f"{name}: {where}, {rule} = {step:.4g}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {key: list(value) for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grid:
        return cls(**{key: tuple(value) for key, value in data.items()})


UNIT_SQUARE_NODES = Grid(
    axes=("x", "y"),
    lower=(0.0, 0.0),
    upper=(1.0, 1.0),
    periodic=(False, False),
    endpoint=(True, True),
)
"""The unit square sampled on nodes, boundary included: ``h = 1 / (R - 1)``."""
