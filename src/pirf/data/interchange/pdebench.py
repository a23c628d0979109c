"""PDEBench's HDF5 layouts, read and written.

PDEBench keeps each benchmark in one HDF5 file with samples first:

* 2D Darcy flow: ``nu`` ``(N, H, W)`` (the coefficient) and ``tensor`` ``(N, 1, H, W)``
  (the solution), plus ``x-coordinate`` and ``y-coordinate``;
* other problems: ``tensor`` (or ``data``) ``(N, T, X)`` in 1D and ``(N, T, H, W)`` or
  ``(N, T, H, W, C)`` in 2D, with ``x-coordinate``, ``y-coordinate``, ``t-coordinate``.

Channels map by shape (docs/data-format.md, "Importing and exporting"): the Darcy layout
fills a PDE with one input channel and one solution channel; ``(N, T, X)`` a one-channel
``(t, x)`` PDE such as Burgers; ``(N, T, H, W)`` a PDE whose channels are the ``T`` time
levels (Kolmogorov's frames) or one channel when ``T = 1``; ``(N, T, H, W, C)`` the ``C``
channels when ``T = 1`` (or the ``T`` levels when ``C = 1``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from pirf.data.interchange.layout import (
    ChannelData,
    Reader,
    checked_dtype,
    frame_prefix,
    open_hdf5,
    read_pirf_attrs,
)
from pirf.errors import PirfError
from pirf.pdes.base import PDE

FORMAT = "pdebench"
SOLUTION_KEYS = ("tensor", "data")
"""Datasets PDEBench keeps its fields in, in the order they are looked for."""


def coordinate_name(axis: str) -> str:
    """PDEBench's name of the coordinate dataset of a grid axis (``x-coordinate``)."""
    return f"{axis}-coordinate"


class PDEBenchReader(Reader):
    """An opened PDEBench file (see the module docstring for the layouts)."""

    format = FORMAT

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open_hdf5(path, "PDEBench HDF5")

    def close(self) -> None:
        self.file.close()

    def pirf_metadata(self) -> dict[str, Any] | None:
        return read_pirf_attrs(self.file.attrs, self.path)

    def _dataset(self, name: str) -> h5py.Dataset | None:
        found = self.file.get(name)
        return found if isinstance(found, h5py.Dataset) else None

    def channels(self, pde: PDE, mapping: Mapping[str, str]) -> list[ChannelData]:
        if mapping:
            raise PirfError(
                "PDEBench layouts map channels by shape; --channel is for the npy and "
                "the-well formats"
            )
        names = ", ".join(pde.channels)
        nu, solution, key = self._dataset("nu"), None, None
        for candidate in SOLUTION_KEYS:
            solution = self._dataset(candidate)
            if solution is not None:
                key = candidate
                break
        if solution is None:
            found = ", ".join(sorted(self.file.keys())) or "nothing"
            raise PirfError(
                f"{self.path} has no 'tensor' or 'data' dataset (it holds: {found}); "
                "not a PDEBench file"
            )
        checked_dtype(solution.dtype, f"{self.path}: '{key}'")
        if nu is not None:
            return self._darcy(pde, nu, solution, key)
        shape = solution.shape
        channels = len(pde.channels)
        if len(shape) == 3:
            if channels != 1:
                raise PirfError(
                    f"{self.path}: '{key}' {shape} holds one field per sample; PDE '{pde.name}' "
                    f"has {channels} channels ({names})"
                )
            return [_channel(pde.channels[0], key, solution, lambda a, b: solution[a:b])]
        if len(shape) == 4:
            levels = shape[1]
            if levels != channels:
                raise PirfError(
                    f"{self.path}: '{key}' {shape} holds {levels} time level(s) per sample; "
                    f"PDE '{pde.name}' has {channels} channel(s) ({names}), which must be "
                    "the time levels"
                )
            return [
                _channel(name, f"{key}[:, {k}]", solution, _slicer(solution, (k,)))
                for k, name in enumerate(pde.channels)
            ]
        if len(shape) == 5:
            levels, components = shape[1], shape[4]
            if levels == 1 and components == channels:
                index: Callable[[int], tuple[int, ...]] = lambda k: (0, slice(None), slice(None), k)  # noqa: E731
                where = "{key}[:, 0, ..., {k}]"
            elif components == 1 and levels == channels:
                index = lambda k: (k, slice(None), slice(None), 0)  # noqa: E731
                where = "{key}[:, {k}, ..., 0]"
            else:
                raise PirfError(
                    f"{self.path}: '{key}' {shape} is (N, T, H, W, C) with T={levels}, "
                    f"C={components}; PDE '{pde.name}' has {channels} channel(s) ({names}): "
                    "need T=1 and C equal to the channels (or C=1 and T equal to them)"
                )
            return [
                _channel(name, where.format(key=key, k=k), solution, _slicer(solution, index(k)))
                for k, name in enumerate(pde.channels)
            ]
        raise PirfError(
            f"{self.path}: '{key}' has shape {shape}; PDEBench 2D fields are (N, T, H, W) "
            "or (N, T, H, W, C), 1D ones (N, T, X)"
        )

    def _darcy(
        self, pde: PDE, nu: h5py.Dataset, solution: h5py.Dataset, key: str
    ) -> list[ChannelData]:
        """The Darcy layout: ``nu`` the PDE's input channel, ``tensor[:, 0]`` the other."""
        if len(pde.channels) != 2 or len(pde.input_channels) != 1:
            raise PirfError(
                f"{self.path} has PDEBench's Darcy layout (nu, {key}): a coefficient and a "
                f"solution; PDE '{pde.name}' has channels {', '.join(pde.channels)} "
                f"(inputs: {', '.join(pde.input_channels) or 'none'})"
            )
        checked_dtype(nu.dtype, f"{self.path}: 'nu'")
        if len(nu.shape) != 3:
            raise PirfError(f"{self.path}: 'nu' must be (N, H, W), got {nu.shape}")
        if len(solution.shape) != 4 or solution.shape[1] != 1:
            raise PirfError(f"{self.path}: '{key}' must be (N, 1, H, W), got {solution.shape}")
        if nu.shape != (solution.shape[0], *solution.shape[2:]):
            raise PirfError(
                f"{self.path}: 'nu' {nu.shape} and '{key}' {solution.shape} disagree on the "
                "samples or the grid"
            )
        coefficient = pde.input_channels[0]
        other = next(name for name in pde.channels if name != coefficient)
        found = {
            coefficient: _channel(coefficient, "nu", nu, lambda a, b: nu[a:b]),
            other: _channel(other, f"{key}[:, 0]", solution, _slicer(solution, (0,))),
        }
        return [found[name] for name in pde.channels]

    def coordinates(self, pde: PDE) -> list[np.ndarray | None]:
        found: list[np.ndarray | None] = []
        for axis in pde.grid.axes:
            dataset = self._dataset(coordinate_name(axis))
            found.append(None if dataset is None or dataset.ndim != 1 else dataset[()])
        return found


def _slicer(dataset: h5py.Dataset, index: tuple[Any, ...]) -> Callable[[int, int], np.ndarray]:
    """``read(start, stop)`` of ``dataset[start:stop, *index]``."""
    return lambda start, stop: dataset[(slice(start, stop), *index)]


def _channel(
    name: str, origin: str, dataset: h5py.Dataset, read: Callable[[int, int], np.ndarray]
) -> ChannelData:
    shape = dataset.shape
    grid = (shape[1], shape[2]) if len(shape) == 3 else (shape[2], shape[3])
    return ChannelData(name, origin, shape[0], grid, dataset.dtype, read)


# --------------------------------------------------------------------------- writing
def layout(pde: PDE) -> str:
    """The PDEBench layout a PDE's fields are exported in: ``darcy`` (one input and one
    solution channel, no time axis), ``single`` (one channel, ``(N, H, W)``), ``frames``
    (channels that are time levels, ``(N, T, H, W)``) or ``channels-last``
    (``(N, 1, H, W, C)``)."""
    if len(pde.channels) == 2 and len(pde.input_channels) == 1 and "t" not in pde.grid.axes:
        return "darcy"
    if len(pde.channels) == 1:
        return "single"
    if frame_prefix(pde) is not None:
        return "frames"
    return "channels-last"


def create_datasets(file: h5py.File, pde: PDE, shape: tuple[int, int, int, int]) -> Callable:
    """Create the datasets of ``pde``'s layout for fields of ``shape`` and the coordinates;
    returns ``write(start, fields)`` that stores a chunk ``(k, C, H, W)`` (float32)."""
    n, channels, height, width = shape
    kind = layout(pde)
    grid = pde.grid.coordinates((height, width), dtype=torch.float32)
    for axis, values in zip(pde.grid.axes, grid, strict=True):
        file.create_dataset(coordinate_name(axis), data=values.numpy())
    if kind == "darcy":
        coefficient = pde.channels.index(pde.input_channels[0])
        solution = 1 - coefficient
        nu = file.create_dataset("nu", (n, height, width), np.float32, chunks=(1, height, width))
        tensor = file.create_dataset(
            "tensor", (n, 1, height, width), np.float32, chunks=(1, 1, height, width)
        )

        def write(start: int, fields: np.ndarray) -> None:
            nu[start : start + len(fields)] = fields[:, coefficient]
            tensor[start : start + len(fields)] = fields[:, solution : solution + 1]

        return write
    if kind == "single":
        target = file.create_dataset(
            "tensor", (n, height, width), np.float32, chunks=(1, height, width)
        )
        return lambda start, fields: target.__setitem__(
            slice(start, start + len(fields)), fields[:, 0]
        )
    if kind == "frames":
        target = file.create_dataset("tensor", shape, np.float32, chunks=(1, *shape[1:]))
        return lambda start, fields: target.__setitem__(slice(start, start + len(fields)), fields)
    last = (n, 1, height, width, channels)
    target = file.create_dataset("tensor", last, np.float32, chunks=(1, *last[1:]))
    return lambda start, fields: target.__setitem__(
        slice(start, start + len(fields)), np.moveaxis(fields, 1, -1)[:, None]
    )
