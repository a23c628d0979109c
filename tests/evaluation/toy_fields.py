"""Ground-truth-like fields with a controlled residual, and corruptions of them.

``ToyPoisson``: channels ``(a, u)`` on the unit square's 32 x 32 nodes, ``a`` a GRF(2, 3)
draw and ``u`` the exact discrete solution of ``laplacian_h(u) = a`` with ``u = 0`` on the
boundary (DST solver), so ground truth has a residual at rounding level. ``ToyDarcy`` is
the same problem with a binary coefficient ``a`` in {3, 12} (``a = 12`` where the GRF
exceeds ``level``); it is named ``darcy`` so that the Darcy statistic applies to it,
without depending on the benchmark's own module.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from pirf.pdes import PDE, relative_l2
from pirf.pdes.elliptic import DirichletSineSolver, interior, laplacian_5pt, with_zero_boundary
from pirf.pdes.grf import cosine_grf
from pirf.seeding import unit_generators

RESOLUTION = 32


class ToyPoisson(PDE):
    """``laplacian_h(u) = a`` on the interior nodes, ``u = 0`` on the boundary."""

    name = "toy-poisson"
    channels = ("a", "u")
    input_channels = ("a",)
    default_params: ClassVar[dict[str, Any]] = {}

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        return (laplacian_5pt(fields[:, 1]) - interior(fields[:, 0])).unsqueeze(1)

    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        return cosine_grf(generators, resolution).unsqueeze(1)

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        a = inputs[:, 0]
        solver = DirichletSineSolver(a.shape[-1], dtype=a.dtype, device=a.device)
        u = with_zero_boundary(solver.solve(interior(a)))
        return torch.stack([a, u], dim=1)

    def consistency(self, fields: torch.Tensor) -> torch.Tensor:
        return relative_l2(fields[:, 1], self.solve(fields[:, :1])[:, 1])


class ToyDarcy(ToyPoisson):
    """The same problem with ``a = a_high`` where the GRF exceeds ``level``, else ``a_low``."""

    name = "darcy"
    default_params: ClassVar[dict[str, Any]] = {"a_low": 3.0, "a_high": 12.0, "level": 0.0}

    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        field = cosine_grf(generators, resolution).unsqueeze(1)
        high, low = self.params["a_high"], self.params["a_low"]
        return torch.where(field > self.params["level"], high, low).to(torch.float64)

    def snap(self, fields: torch.Tensor) -> torch.Tensor:
        midpoint = 0.5 * (self.params["a_low"] + self.params["a_high"])
        a = torch.where(fields[:, :1] > midpoint, self.params["a_high"], self.params["a_low"])
        return torch.cat([a.to(fields.dtype), fields[:, 1:]], dim=1)


def draw(pde: PDE, n: int, *, seed: int, stream: int) -> torch.Tensor:
    """``n`` exact samples ``(n, 2, R, R)`` (float64, physical units)."""
    return pde.generate(unit_generators(seed, stream, range(n)), RESOLUTION)


def blur(fields: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel (``sigma`` in pixels, edges replicated)."""
    offsets = torch.arange(-3, 4, dtype=fields.dtype)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    x = fields.reshape(-1, 1, *fields.shape[-2:])
    x = torch.nn.functional.pad(x, (3, 3, 0, 0), mode="replicate")
    x = torch.nn.functional.conv2d(x, weights.view(1, 1, 1, -1))
    x = torch.nn.functional.pad(x, (0, 0, 3, 3), mode="replicate")
    x = torch.nn.functional.conv2d(x, weights.view(1, 1, -1, 1))
    return x.reshape(fields.shape)


def add_noise(fields: torch.Tensor, std: torch.Tensor, seed: int) -> torch.Tensor:
    """White noise of per-channel standard deviation ``std (C,)`` added to every value."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(fields.shape, generator=generator, dtype=fields.dtype)
    return fields + noise * std.view(1, -1, 1, 1)


def shuffle_pixels(fields: torch.Tensor, seed: int) -> torch.Tensor:
    """One random spatial permutation of the pixels, applied to every sample and channel."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(fields.shape[-2] * fields.shape[-1], generator=generator)
    return fields.flatten(2)[:, :, order].reshape(fields.shape)


def collapse(fields: torch.Tensor) -> torch.Tensor:
    """The first sample, repeated."""
    return fields[:1].expand_as(fields).clone()


def mispair(fields: torch.Tensor) -> torch.Tensor:
    """Each sample's first channel with the next sample's other channels."""
    return torch.cat([fields[:, :1], fields[:, 1:].roll(1, dims=0)], dim=1)
