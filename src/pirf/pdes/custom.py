"""Define a PDE from plain functions, without writing a class.

``define_pde`` is the shortest way in for a user's own equation: a residual function and
channel names are enough to fine-tune and evaluate; an input sampler and a solver make
``pirf data generate`` work too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pirf.pdes.base import PDE
from pirf.pdes.grid import UNIT_SQUARE_NODES, Grid

ResidualFn = Callable[[torch.Tensor], torch.Tensor]
SamplerFn = Callable[[list[torch.Generator], int], torch.Tensor]
SolverFn = Callable[[torch.Tensor], torch.Tensor]


def define_pde(
    name: str,
    channels: tuple[str, ...] | list[str],
    residual: ResidualFn,
    *,
    input_channels: tuple[str, ...] | list[str] = (),
    grid: Grid = UNIT_SQUARE_NODES,
    sample_inputs: SamplerFn | None = None,
    solve: SolverFn | None = None,
    min_resolution: int = 8,
    description: str = "",
) -> type[PDE]:
    """Build a :class:`PDE` subclass from functions; register it with ``pirf.pdes.register``.

    ``residual(fields)`` maps physical fields ``(B, C, H, W)`` to the residual where it is
    defined; ``sample_inputs(generators, resolution)`` draws one unit per generator on the
    CPU; ``solve(inputs)`` returns fields ``(B, C, H, W)``.
    """
    namespace: dict[str, Any] = {
        "name": name,
        "channels": tuple(channels),
        "input_channels": tuple(input_channels),
        "grid": grid,
        "min_resolution": min_resolution,
        "description": description,
        "residual": lambda self, fields: residual(fields),
        "__doc__": description or f"User-defined PDE '{name}'.",
    }
    if sample_inputs is not None:
        namespace["sample_inputs"] = lambda self, generators, resolution: sample_inputs(
            generators, resolution
        )
    if solve is not None:
        namespace["solve"] = lambda self, inputs: solve(inputs)
    class_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or "User"
    return type(class_name, (PDE,), namespace)
