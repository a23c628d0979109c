"""The on-disk layout of a pirf fields file, and reading its header safely.

A fields file is HDF5 with one dataset ``fields`` (float32, ``(N, C, H, W)``, physical
units) and root attributes that describe the PDE, the grid, the normalisation and how the
file was made. Datasets made by ``pirf data generate`` and samples written by models share
this layout; ``docs/data-format.md`` documents every attribute.

Everything that can go wrong when opening a file a user points at (missing, not HDF5,
truncated, not a pirf file, written by a newer pirf) becomes a one-line
:class:`~pirf.errors.PirfError` here, so no caller ever shows an h5py traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pirf.errors import PirfError
from pirf.pdes.normalisation import Normalisation

FORMAT_NAME = "pirf-fields"
"""Value of the root attribute ``format`` that marks a pirf fields file."""
FORMAT_VERSION = 1
"""Layout version written by this pirf; readers refuse files with a larger one."""
FIELDS = "fields"
"""Name of the dataset holding the samples."""
STORAGE_DTYPE = np.float32
"""Storage precision of ``fields``."""

JSON_ATTRS = ("channels", "input_channels", "params", "grid")
"""Root attributes stored as JSON text."""
REQUIRED_ATTRS = (
    "format",
    "format_version",
    "pde",
    *JSON_ATTRS,
    "resolution",
    "norm_shift",
    "norm_scale",
)
"""Attributes every fields file has; the rest (seed, split, generation settings) may be absent."""


@dataclass(frozen=True)
class Header:
    """What a fields file says about itself, decoded and validated."""

    path: Path
    pde_name: str
    channels: tuple[str, ...]
    input_channels: tuple[str, ...]
    params: dict[str, Any]
    grid: dict[str, Any]
    resolution: int
    normalisation: Normalisation
    shape: tuple[int, int, int, int]
    format_version: int
    attrs: dict[str, Any] = field(default_factory=dict)
    """Every root attribute, decoded (JSON parsed, arrays as lists, numpy scalars as Python)."""

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.shape[0]


def encode_attr(value: Any) -> Any:
    """A Python value as an HDF5 attribute: str/int/float/bool as is, float lists as float64
    arrays, anything else (dicts, string lists, None) as JSON text."""
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value, dtype=np.float64)
    return json.dumps(value)


def decode_attr(name: str, value: Any) -> Any:
    """The inverse of :func:`encode_attr` for reading: JSON attributes parsed, numpy values
    converted to Python."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if name in JSON_ATTRS and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_file(path: str | Path) -> h5py.File:
    """Open a fields file read-only, with a one-line error for every way that can fail."""
    path = Path(path)
    if not path.exists():
        raise PirfError(f"no such file: {path}")
    if path.is_dir():
        raise PirfError(f"{path} is a directory, not a dataset file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as error:
        raise PirfError(f"cannot read {path}: {_reason(error)}") from None
    if not is_hdf5:
        raise PirfError(f"{path} is not an HDF5 file (expected a pirf dataset)")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise PirfError(
            f"cannot open {path}: the file is corrupt or truncated ({_reason(error)})"
        ) from None


def read_header(file: h5py.File, path: str | Path) -> Header:
    """Decode and validate the root attributes and the ``fields`` dataset of an open file."""
    path = Path(path)
    try:
        raw = dict(file.attrs.items())
        dataset = file.get(FIELDS)
        shape = tuple(dataset.shape) if isinstance(dataset, h5py.Dataset) else None
        dtype = dataset.dtype if isinstance(dataset, h5py.Dataset) else None
    except (OSError, KeyError, RuntimeError) as error:
        raise PirfError(
            f"cannot read {path}: the file is corrupt or truncated ({_reason(error)})"
        ) from None
    if raw.get("format") not in (FORMAT_NAME, FORMAT_NAME.encode()):
        raise PirfError(
            f"{path} is an HDF5 file but not a pirf dataset (no format='{FORMAT_NAME}' attribute)"
        )
    missing = [name for name in REQUIRED_ATTRS if name not in raw]
    if missing:
        raise PirfError(f"{path} is not a valid pirf dataset: missing attribute(s) {missing}")
    try:
        attrs = {name: decode_attr(name, value) for name, value in raw.items()}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PirfError(f"{path} is not a valid pirf dataset: bad attribute ({error})") from None
    version = attrs["format_version"]
    if not isinstance(version, int) or version < 1:
        raise PirfError(f"{path} is not a valid pirf dataset: format_version {version!r}")
    if version > FORMAT_VERSION:
        raise PirfError(
            f"{path} has format version {version}, newer than this pirf reads "
            f"({FORMAT_VERSION}); upgrade pirf"
        )
    channels = attrs["channels"]
    if shape is None:
        raise PirfError(f"{path} is not a valid pirf dataset: no '{FIELDS}' dataset")
    if len(shape) != 4 or dtype != STORAGE_DTYPE:
        raise PirfError(
            f"{path} is not a valid pirf dataset: '{FIELDS}' must be float32 (N, C, H, W), "
            f"got {dtype} {shape}"
        )
    if not isinstance(channels, list) or len(channels) != shape[1]:
        raise PirfError(
            f"{path} is not a valid pirf dataset: channels {channels!r} do not match "
            f"'{FIELDS}' shape {shape}"
        )
    if not isinstance(attrs["params"], dict) or not isinstance(attrs["grid"], dict):
        raise PirfError(f"{path} is not a valid pirf dataset: params and grid must be JSON objects")
    resolution = attrs["resolution"]
    if not isinstance(resolution, int) or shape[2:] != (resolution, resolution):
        raise PirfError(
            f"{path} is not a valid pirf dataset: resolution {resolution!r} does not match "
            f"'{FIELDS}' shape {shape}"
        )
    if shape[0] == 0:
        raise PirfError(f"{path} holds no samples")
    try:
        normalisation = Normalisation(
            tuple(float(v) for v in attrs["norm_shift"]),
            tuple(float(v) for v in attrs["norm_scale"]),
        )
    except (TypeError, ValueError, PirfError) as error:
        raise PirfError(
            f"{path} is not a valid pirf dataset: bad normalisation ({error})"
        ) from None
    if normalisation.channels != shape[1]:
        raise PirfError(
            f"{path} is not a valid pirf dataset: normalisation has {normalisation.channels} "
            f"channels, '{FIELDS}' has {shape[1]}"
        )
    return Header(
        path=path,
        pde_name=str(attrs["pde"]),
        channels=tuple(channels),
        input_channels=tuple(attrs["input_channels"]),
        params=dict(attrs["params"]),
        grid=dict(attrs["grid"]),
        resolution=resolution,
        normalisation=normalisation,
        shape=shape,  # type: ignore[arg-type]
        format_version=version,
        attrs=attrs,
    )


def read_error(path: str | Path, error: BaseException) -> PirfError:
    """The one-line error for a failed read of sample data (e.g. a checksum mismatch)."""
    return PirfError(f"cannot read {path}: the file is corrupt or truncated ({_reason(error)})")


def _reason(error: BaseException) -> str:
    """The first line of an h5py/HDF5 error message, without the error-stack noise."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rstrip(" .")
