"""What every community format shares once opened: PDE channels as readable arrays, the
source's own coordinates, and pirf's metadata carried in attributes.

An importer turns an external file into one :class:`ChannelData` per channel of the PDE
(each reads samples ``[start, stop)`` as ``(k, H, W)``) plus the file's coordinates per
grid axis; :mod:`pirf.data.interchange.importing` checks and writes them. An exporter
stores the pirf file's root attributes under :data:`PIRF_PREFIX` so that importing the
export again restores the PDE, its parameters and the normalisation exactly.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pirf.data.format import FORMAT_NAME, decode_attr
from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.grid import Grid

PIRF_PREFIX = "pirf_"
"""Prefix of the root attributes that carry a pirf file's own attributes in an export."""


@dataclass(frozen=True)
class ChannelData:
    """One PDE channel found in an external file.

    ``origin`` says where it comes from (``"nu"``, ``"tensor[:, 0]"``, ``"t0_fields/u"``),
    ``n`` and ``shape`` are the samples and grid ``(H, W)`` it provides, and ``read(start,
    stop)`` returns samples ``[start, stop)`` as an array ``(k, H, W)``.
    """

    name: str
    origin: str
    n: int
    shape: tuple[int, int]
    dtype: np.dtype
    read: Callable[[int, int], np.ndarray]


class Reader(abc.ABC):
    """An opened external file: its pirf metadata (if any), channels and coordinates."""

    format: str
    path: Path

    def pirf_metadata(self) -> dict[str, Any] | None:
        """The pirf file's decoded root attributes an export stored, or None."""
        return None

    @abc.abstractmethod
    def channels(self, pde: PDE, mapping: Mapping[str, str]) -> list[ChannelData]:
        """One :class:`ChannelData` per channel of ``pde``, in its order; ``mapping`` names
        the source of some channels (``--channel a=...``). Raises one-line errors."""

    def coordinates(self, pde: PDE) -> list[np.ndarray | None]:
        """The file's coordinates of each grid axis of ``pde`` (None where it has none)."""
        return [None, None]

    def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release the file."""


def open_hdf5(path: Path, what: str) -> h5py.File:
    """Open an external HDF5 file read-only, with one-line errors for every failure."""
    if not path.exists():
        raise PirfError(f"no such file: {path}")
    if path.is_dir():
        raise PirfError(f"{path} is a directory, not a {what} file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as error:
        raise PirfError(f"cannot read {path}: {error}") from None
    if not is_hdf5:
        raise PirfError(f"{path} is not an HDF5 file (expected a {what} file)")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise PirfError(f"cannot open {path}: the file is corrupt or truncated ({error})") from None


def checked_dtype(dtype: np.dtype, where: str) -> np.dtype:
    """``dtype`` if pirf can store it as float32 (floats, integers, booleans), else an error."""
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or dtype == np.bool_):  # fmt: skip
        raise PirfError(f"{where} holds {dtype} values; pirf imports real numbers only")
    return dtype


def frame_prefix(pde: PDE) -> str | None:
    """The common name of a PDE whose channels are consecutive time levels ``w0, w1, ...``
    (Kolmogorov's frames), or None. Such channels travel on a time axis in exports."""
    channels = pde.channels
    if len(channels) < 2:
        return None
    match = re.fullmatch(r"(.*?[^0-9])0", channels[0])
    if match is None:
        return None
    prefix = match.group(1)
    return prefix if channels == tuple(f"{prefix}{k}" for k in range(len(channels))) else None


def time_axis_first(pde: PDE) -> bool:
    """Whether the PDE's first grid axis is time (Burgers' ``(t, x)``): one spatial axis."""
    return pde.grid.axes[0] == "t"


def pirf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A pirf file's raw root attributes, renamed with :data:`PIRF_PREFIX` for an export."""
    return {f"{PIRF_PREFIX}{name}": value for name, value in attrs.items()}


def read_pirf_attrs(attrs: Mapping[str, Any], path: Path) -> dict[str, Any] | None:
    """The decoded pirf attributes an export stored, or None when the file has none."""
    if f"{PIRF_PREFIX}format" not in attrs:
        return None
    try:
        found = {
            name[len(PIRF_PREFIX) :]: decode_attr(name[len(PIRF_PREFIX) :], value)
            for name, value in attrs.items()
            if name.startswith(PIRF_PREFIX)
        }
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PirfError(f"{path}: bad pirf attribute ({error})") from None
    if found.get("format") != FORMAT_NAME:
        return None
    missing = [key for key in ("pde", "params", "channels") if key not in found]
    if missing or not isinstance(found["params"], dict):
        raise PirfError(f"{path}: incomplete pirf attributes (missing {missing or ['params']})")
    return found


# --------------------------------------------------------------------------- grids
def describe_coordinates(values: np.ndarray, lower: float, upper: float) -> str:
    """Which convention 1-D coordinates follow on ``[lower, upper]``: nodes including
    both ends, cell centres, points without the upper end, or just their range."""
    n = len(values)
    first, last = float(values[0]), float(values[-1])
    if n < 2:
        return f"1 point at {first:.4g}"
    steps = np.diff(values.astype(np.float64))
    step = float(steps.mean())
    extent = f"{n} values from {first:.4g} to {last:.4g}, step {step:.4g}"
    if not np.allclose(steps, step, rtol=1e-3, atol=0.0):
        return f"{n} non-uniform values from {first:.4g} to {last:.4g}"
    tolerance = 1e-3 * abs(step)
    if abs(first - lower) < tolerance and abs(last - upper) < tolerance:
        kind = "nodes including both ends, h = L/(n-1)"
    elif abs(first - lower - step / 2) < tolerance and abs(last - upper + step / 2) < tolerance:
        kind = "cell centres, h = L/n"
    elif abs(first - lower) < tolerance and abs(last - upper + step) < tolerance:
        kind = "points without the upper end, h = L/n"
    else:
        return extent
    return f"{kind} ({extent})"


def compare_grid(
    grid: Grid, shape: tuple[int, int], coordinates: list[np.ndarray | None]
) -> list[dict[str, Any]]:
    """Per axis: pirf's convention, the source's coordinates described, and whether they
    are pirf's own points (None when the source has no coordinates for that axis)."""
    pirf_lines = grid.describe(shape)
    mine = grid.coordinates(shape)
    report = []
    for axis, values in enumerate(coordinates):
        n = shape[axis]
        entry: dict[str, Any] = {
            "axis": grid.axes[axis],
            "pirf": pirf_lines[axis],
            "source": None,
            "matches": None,
        }
        if values is not None:
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            note = ""
            if len(values) == n + 1:
                values, note = values[:n], f" (of {n + 1} values, the first {n})"
            lower, upper = grid.lower[axis], grid.upper[axis]
            entry["source"] = describe_coordinates(values, lower, upper) + note
            if len(values) == n and np.isfinite(values).all():
                tolerance = 1e-5 * (upper - lower)
                entry["matches"] = bool(
                    np.allclose(values, mine[axis].numpy(), rtol=0, atol=tolerance)
                )
            else:
                entry["matches"] = False
        report.append(entry)
    return report


def grid_matches(report: list[dict[str, Any]]) -> bool | None:
    """False if any axis differs, True if every axis matches, None if nothing is known."""
    known = [entry["matches"] for entry in report if entry["matches"] is not None]
    if not known:
        return None
    return all(known)
