"""Small PDEs for the data-layer tests, independent of the built-in benchmarks.

``Toy`` has channels ``(a, u)`` with ``u = scale * a^2`` at every node; its residual is
``u - scale * a^2``. Parameters exercise the data pipeline: ``frames`` samples per random
unit (a trajectory-like unit), ``delay`` seconds per solve (for interruption tests) and
``blowup`` (the solver returns NaN). Importable as ``tests.data.toy_pdes:Toy`` from a
subprocess started at the repository root.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch

from pirf.pdes import PDE


class Toy(PDE):
    """``u = scale * a^2`` pointwise; ``a`` is white noise drawn per unit."""

    name = "toy"
    channels = ("a", "u")
    input_channels = ("a",)
    description = "pointwise toy problem for data tests"
    default_params: ClassVar[dict[str, Any]] = {
        "scale": 1.0,
        "frames": 1,
        "delay": 0.0,
        "blowup": False,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"resolution": 8, "params": {"scale": 2.0}},
        "wide": {"resolution": 12, "params": {"scale": 3.0}},
    }
    min_resolution = 4

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        a, u = fields[:, :1], fields[:, 1:]
        return u - self.params["scale"] * a**2

    def samples_per_unit(self, resolution: int) -> int:
        return int(self.params["frames"])

    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        draws = [
            torch.randn(1, resolution, resolution, generator=g, dtype=torch.float64)
            for g in generators
        ]
        return torch.stack(draws)

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.params["delay"]:
            time.sleep(self.params["delay"])
        frames = torch.arange(1, self.samples_per_unit(0) + 1, dtype=inputs.dtype)
        a = (inputs.unsqueeze(1) * frames.view(1, -1, 1, 1, 1)).flatten(0, 1)
        u = self.params["scale"] * a**2
        if self.params["blowup"]:
            u = u / 0.0
        return torch.cat([a, u], dim=1)


class ResidualOnly(PDE):
    """A PDE that can be checked but cannot generate data."""

    name = "toy-residual-only"
    channels = ("u",)
    min_resolution = 4

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        return fields


class Unregistered(Toy):
    """Never registered by name: files made with it are found through ``pde_class``."""

    name = "toy-unregistered"


class Frames(PDE):
    """Channels that are consecutive time levels (``w0, w1, w2``), like Kolmogorov's."""

    name = "toy-frames"
    channels = ("w0", "w1", "w2")
    min_resolution = 4

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        return fields[:, 1:] - fields[:, :-1]


class Pair(PDE):
    """Two channels that are neither inputs nor time levels (stored channels-last)."""

    name = "toy-pair"
    channels = ("p", "q")
    default_params: ClassVar[dict[str, Any]] = {"weight": 1.0, "label": "x"}
    min_resolution = 4

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        return fields[:, :1] - self.params["weight"] * fields[:, 1:]
