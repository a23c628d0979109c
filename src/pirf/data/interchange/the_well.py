"""The Well's HDF5 layout, read and written.

A Well file keeps its fields by tensor order in groups ``t0_fields`` (scalars, each
``(n_traj, n_steps, *spatial)``), ``t1_fields`` (vectors, one more axis) and ``t2_fields``
(tensors, two more), each dataset with attributes ``dim_varying``, ``sample_varying`` and
``time_varying`` (a field that does not vary over samples or time lacks that axis); the
coordinates in ``dimensions/`` (``time`` and the axes ``@spatial_dims`` names);
``boundary_conditions/`` groups with ``bc_type``, ``associated_dims`` and a ``mask``; and
root attributes ``dataset_name``, ``grid_type``, ``n_spatial_dims``, ``n_trajectories``,
``simulation_parameters`` with one attribute per parameter.

Channels map by name: channel ``c`` is ``t0_fields/c`` unless ``--channel c=FIELD`` names
another (``FIELD``, ``t1_fields/FIELD:K`` for component ``K`` of a vector, ``:I,J`` of a
tensor). A PDE whose channels are time levels ``w0, w1, ...`` also takes one field ``w``
with that many steps; a ``(t, x)`` PDE (Burgers) takes one-dimensional fields whose steps
are its time axis. Any other PDE holds one time level per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    time_axis_first,
)
from pirf.errors import PirfError
from pirf.pdes.base import PDE

FORMAT = "the-well"
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
"""Field groups by tensor order: a field in ``t<k>_fields`` has ``k`` component axes."""
ROOT_ATTRS = (
    "dataset_name",
    "grid_type",
    "n_spatial_dims",
    "n_trajectories",
    "simulation_parameters",
)
"""Root attributes of the layout itself; a simulation parameter never replaces them."""


def strings(values: list[str]) -> np.ndarray:
    """A list of names as an HDF5 attribute (variable-length UTF-8 strings)."""
    return np.array(values, dtype=h5py.string_dtype())


def _names(value: Any) -> list[str]:
    values = np.atleast_1d(np.asarray(value)).tolist()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@dataclass(frozen=True)
class _Field:
    """A dataset of the file and how its axes read."""

    dataset: h5py.Dataset
    origin: str
    sample_varying: bool
    time_varying: bool
    components: tuple[int, ...]

    @property
    def steps(self) -> int | None:
        return self.dataset.shape[int(self.sample_varying)] if self.time_varying else None


class WellReader(Reader):
    """An opened Well file (see the module docstring)."""

    format = FORMAT

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open_hdf5(path, "The Well HDF5")
        if "n_spatial_dims" not in self.file.attrs or not isinstance(
            self.file.get("dimensions"), h5py.Group
        ):
            self.file.close()
            raise PirfError(
                f"{path} is not a The Well file (no 'n_spatial_dims' attribute or "
                "'dimensions' group)"
            )

    def close(self) -> None:
        self.file.close()

    def pirf_metadata(self) -> dict[str, Any] | None:
        return read_pirf_attrs(self.file.attrs, self.path)

    @property
    def spatial_dims(self) -> list[str]:
        dimensions = self.file["dimensions"]
        if "spatial_dims" in dimensions.attrs:
            return _names(dimensions.attrs["spatial_dims"])
        return [name for name in dimensions if name != "time"]

    def _available(self) -> str:
        group = self.file.get("t0_fields")
        names = sorted(group) if isinstance(group, h5py.Group) else []
        return ", ".join(names) or "nothing"

    def _field(self, spec: str, spatial: int) -> _Field:
        """The dataset ``spec`` names (``NAME``, ``GROUP/NAME``, with ``:K`` or ``:I,J``)."""
        name, _, component = spec.partition(":")
        path = name if "/" in name else f"t0_fields/{name}"
        dataset = self.file.get(path)
        if not isinstance(dataset, h5py.Dataset):
            raise PirfError(
                f"{self.path} has no field '{path}' (t0_fields holds: {self._available()})"
            )
        order = FIELD_GROUPS.index(path.split("/")[0]) if path.split("/")[0] in FIELD_GROUPS else 0
        try:
            components = tuple(int(k) for k in component.split(",")) if component else ()
        except ValueError:
            raise PirfError(f"bad component '{component}' in '{spec}'; use :K or :I,J") from None
        if len(components) != order:
            wanted = {0: "no component", 1: "a component with :K"}.get(order, "one with :I,J")
            raise PirfError(f"'{path}' has {order} component axes; select {wanted}")
        attrs = dataset.attrs
        sample_varying = bool(attrs.get("sample_varying", True))
        time_varying = bool(attrs.get("time_varying", True))
        expected = int(sample_varying) + int(time_varying) + spatial + order
        if dataset.ndim != expected:
            raise PirfError(
                f"{self.path}: '{path}' has shape {dataset.shape}; with sample_varying="
                f"{sample_varying}, time_varying={time_varying} and {spatial} spatial dims it "
                f"should have {expected} axes"
            )
        for position, index in enumerate(components):
            size = dataset.shape[dataset.ndim - order + position]
            if not 0 <= index < size:
                raise PirfError(f"component {index} out of range for '{path}' {dataset.shape}")
        checked_dtype(dataset.dtype, f"{self.path}: '{path}'")
        origin = path + (f":{component}" if component else "")
        return _Field(dataset, origin, sample_varying, time_varying, components)

    def channels(self, pde: PDE, mapping: Mapping[str, str]) -> list[ChannelData]:
        trajectory = time_axis_first(pde)
        try:
            spatial = int(np.asarray(self.file.attrs["n_spatial_dims"]))
        except (TypeError, ValueError):
            raise PirfError(f"{self.path}: 'n_spatial_dims' is not an integer") from None
        needed = 1 if trajectory else 2
        if spatial != needed:
            raise PirfError(
                f"{self.path} has {spatial} spatial dimension(s); PDE '{pde.name}' on axes "
                f"{', '.join(pde.grid.axes)} needs {needed}"
            )
        prefix = frame_prefix(pde)
        group = self.file.get("t0_fields")
        frames_field = (
            prefix is not None
            and not mapping
            and isinstance(group, h5py.Group)
            and prefix in group
            and not all(name in group for name in pde.channels)
        )
        if frames_field:
            field = self._field(prefix, spatial)  # type: ignore[arg-type]
            if field.steps != len(pde.channels):
                raise PirfError(
                    f"{self.path}: '{field.origin}' has {field.steps or 'no'} time steps; PDE "
                    f"'{pde.name}' has {len(pde.channels)} time levels ({', '.join(pde.channels)})"
                )
            chosen = [(name, field, k) for k, name in enumerate(pde.channels)]
        else:
            chosen = []
            for name in pde.channels:
                field = self._field(mapping.get(name, name), spatial)
                chosen.append((name, field, self._time_index(pde, name, field, trajectory)))
        counts = {f.dataset.shape[0] for _, f, _ in chosen if f.sample_varying}
        if len(counts) > 1:
            raise PirfError(
                f"{self.path}: the fields disagree on the number of trajectories {sorted(counts)}"
            )
        n = counts.pop() if counts else 1
        return [self._channel(name, field, time, n) for name, field, time in chosen]

    def _time_index(self, pde: PDE, name: str, field: _Field, trajectory: bool) -> int | None:
        """Which step of the field a sample takes (None: the steps are the PDE's t axis)."""
        if trajectory:
            if not field.time_varying:
                raise PirfError(
                    f"{self.path}: '{field.origin}' does not vary in time; PDE '{pde.name}' "
                    f"takes its t axis from the steps"
                )
            return None
        if field.time_varying and field.steps != 1:
            raise PirfError(
                f"{self.path}: '{field.origin}' has {field.steps} time steps; PDE '{pde.name}' "
                f"holds one time level per sample in channel '{name}'"
            )
        return 0 if field.time_varying else None

    def _channel(self, name: str, field: _Field, time: int | None, n: int) -> ChannelData:
        dataset = field.dataset
        lead = int(field.sample_varying) + int(field.time_varying and time is not None)
        order = len(field.components)
        grid = tuple(dataset.shape[lead : dataset.ndim - order])
        origin = field.origin + (f" step {time}" if time is not None and field.steps != 1 else "")

        def read(start: int, stop: int) -> np.ndarray:
            selection: tuple[Any, ...] = (slice(start, stop),) if field.sample_varying else ()
            if time is not None:
                selection += (time,)
            selection += (Ellipsis, *field.components) if order else (Ellipsis,)
            values = dataset[selection]
            if not field.sample_varying:
                values = np.broadcast_to(values, (stop - start, *values.shape))
            return values

        return ChannelData(name, origin, n, grid, dataset.dtype, read)  # type: ignore[arg-type]

    def coordinates(self, pde: PDE) -> list[np.ndarray | None]:
        spatial = [*self.spatial_dims, "", ""]  # a file may name fewer axes than it has
        names = ["time", spatial[0]] if time_axis_first(pde) else spatial[:2]
        found: list[np.ndarray | None] = []
        for name in names:
            dataset = self.file["dimensions"].get(name) if name else None
            found.append(
                dataset[()] if isinstance(dataset, h5py.Dataset) and dataset.ndim == 1 else None
            )
        return found


# --------------------------------------------------------------------------- writing
def layout(pde: PDE) -> str:
    """How a PDE's samples become Well trajectories: ``trajectory`` (a ``(t, x)`` PDE: one
    spatial dimension, the t axis as steps), ``frames`` (channels that are time levels: one
    field with that many steps) or ``static`` (one field per channel, no time axis)."""
    if time_axis_first(pde):
        return "trajectory"
    return "frames" if frame_prefix(pde) is not None else "static"


def create_datasets(file: h5py.File, pde: PDE, shape: tuple[int, int, int, int]) -> Callable:
    """Create the Well groups, coordinates and attributes for fields of ``shape``; returns
    ``write(start, fields)`` that stores a chunk ``(k, C, H, W)`` (float32)."""
    n, channels, height, width = shape
    kind = layout(pde)
    axes = pde.grid.axes
    coordinates = [c.numpy() for c in pde.grid.coordinates((height, width), dtype=torch.float32)]
    spatial = [axes[1]] if kind == "trajectory" else list(axes)
    spatial_values = coordinates[1:] if kind == "trajectory" else coordinates
    if kind == "trajectory":
        time = coordinates[0]
    elif kind == "frames":
        time = np.arange(channels, dtype=np.float32)
    else:
        time = np.zeros(1, dtype=np.float32)
    _root_attrs(file, pde, n, len(spatial))
    dimensions = file.create_group("dimensions")
    dimensions.attrs["spatial_dims"] = strings(spatial)
    dimensions.create_dataset("time", data=time).attrs["sample_varying"] = False
    for name, values, periodic in zip(spatial, spatial_values, _periodic(pde, kind), strict=True):
        dataset = dimensions.create_dataset(name, data=values)
        dataset.attrs["sample_varying"] = False
        dataset.attrs["time_varying"] = False
        _boundary(file, name, len(values), periodic)
    scalars = file.create_group("scalars")
    scalars.attrs["field_names"] = strings([])
    for group_name in FIELD_GROUPS[1:]:
        file.create_group(group_name).attrs["field_names"] = strings([])
    fields = file.create_group("t0_fields")
    if kind == "frames":
        name = frame_prefix(pde)
        assert name is not None
        target = _field(fields, name, (n, channels, height, width), time_varying=True, spatial=2)
        fields.attrs["field_names"] = strings([name])
        return lambda start, chunk: target.__setitem__(slice(start, start + len(chunk)), chunk)
    targets = [
        _field(
            fields,
            name,
            (n, height, width),
            time_varying=kind == "trajectory",
            spatial=len(spatial),
        )
        for name in pde.channels
    ]
    fields.attrs["field_names"] = strings(list(pde.channels))

    def write(start: int, chunk: np.ndarray) -> None:
        for index, target in enumerate(targets):
            target[start : start + len(chunk)] = chunk[:, index]

    return write


def _periodic(pde: PDE, kind: str) -> list[bool]:
    periodic = list(pde.grid.periodic)
    return periodic[1:] if kind == "trajectory" else periodic


def _root_attrs(file: h5py.File, pde: PDE, n: int, spatial: int) -> None:
    params = {
        name: value
        for name, value in pde.params.items()
        if isinstance(value, (bool, int, float, str)) and name not in ROOT_ATTRS
        and not name.startswith("pirf_")
    }  # fmt: skip
    file.attrs["dataset_name"] = pde.name
    file.attrs["grid_type"] = "cartesian"
    file.attrs["n_spatial_dims"] = spatial
    file.attrs["n_trajectories"] = n
    file.attrs["simulation_parameters"] = strings(list(params))
    for name, value in params.items():
        file.attrs[name] = value


def _boundary(file: h5py.File, axis: str, size: int, periodic: bool) -> None:
    """A ``boundary_conditions`` group for both ends of ``axis``: PERIODIC, or WALL for
    the ends of a bounded axis (where pirf's Dirichlet problems store their boundary)."""
    conditions = file.require_group("boundary_conditions")
    kind = "PERIODIC" if periodic else "WALL"
    group = conditions.create_group(f"{axis}_{kind.lower()}")
    group.attrs["associated_dims"] = strings([axis])
    group.attrs["associated_fields"] = strings([])
    group.attrs["bc_type"] = kind
    group.attrs["sample_varying"] = False
    group.attrs["time_varying"] = False
    mask = np.zeros(size, dtype=bool)
    mask[[0, -1]] = True
    group.create_dataset("mask", data=mask)


def _field(
    group: h5py.Group, name: str, shape: tuple[int, ...], *, time_varying: bool, spatial: int
) -> h5py.Dataset:
    dataset = group.create_dataset(name, shape, np.float32, chunks=(1, *shape[1:]))
    dataset.attrs["dim_varying"] = np.ones(spatial, dtype=bool)
    dataset.attrs["sample_varying"] = True
    dataset.attrs["time_varying"] = time_varying
    return dataset
