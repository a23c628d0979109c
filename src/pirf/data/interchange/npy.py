"""NumPy arrays as DiffusionPDE keeps its data: one ``.npy`` file per channel.

The source is a directory: channel ``c`` is read from ``DIR/c.npy`` unless
``--channel c=FILE`` names another file (relative to the directory); each array is
``(N, H, W)`` or ``(N, 1, H, W)``. A single ``.npy`` file holding ``(N, C, H, W)`` in the
PDE's channel order (or ``(N, H, W)`` for a one-channel PDE) works too. Files are memory
mapped (never loaded whole) and never unpickled: object arrays are refused. ``.npy``
files carry no coordinates, so pirf assumes its own grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pirf.data.interchange.layout import ChannelData, Reader, checked_dtype
from pirf.errors import PirfError
from pirf.pdes.base import PDE

FORMAT = "npy"


def load_array(path: Path) -> np.ndarray:
    """A memory-mapped ``.npy`` array, with one-line errors (no pickles)."""
    if not path.exists():
        raise PirfError(f"no such file: {path}")
    if path.is_dir():
        raise PirfError(f"{path} is a directory, not a .npy file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise PirfError(f"cannot read {path} as a .npy array without pickle: {error}") from None
    except OSError as error:
        raise PirfError(f"cannot read {path}: {error}") from None


class NpyReader(Reader):
    """A directory of per-channel ``.npy`` files, or one ``(N, C, H, W)`` file."""

    format = FORMAT

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise PirfError(f"no such file or directory: {path}")

    def channels(self, pde: PDE, mapping: Mapping[str, str]) -> list[ChannelData]:
        if not self.path.is_dir():
            if mapping:
                raise PirfError(
                    f"--channel names files inside a directory; {self.path} is a file "
                    "(give the directory that holds the channel files)"
                )
            return self._stacked(pde)
        found = []
        for name in pde.channels:
            file = self.path / mapping.get(name, f"{name}.npy")
            if not file.exists():
                raise PirfError(
                    f"no file for channel '{name}': {file} does not exist (map it with "
                    f"--channel {name}=FILE)"
                )
            array = load_array(file)
            checked_dtype(array.dtype, str(file))
            if array.ndim == 4 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 3:
                raise PirfError(
                    f"{file} has shape {array.shape}; a channel file holds (N, H, W) "
                    "or (N, 1, H, W)"
                )
            found.append(_channel(name, file.name, array))
        return found

    def _stacked(self, pde: PDE) -> list[ChannelData]:
        array = load_array(self.path)
        checked_dtype(array.dtype, str(self.path))
        channels = len(pde.channels)
        if array.ndim == 3 and channels == 1:
            array = array[:, None]
        if array.ndim != 4 or array.shape[1] != channels:
            raise PirfError(
                f"{self.path} has shape {array.shape}; PDE '{pde.name}' needs (N, {channels}, "
                f"H, W) with channels {', '.join(pde.channels)} (or a directory of one file "
                "per channel)"
            )
        return [
            _channel(name, f"{self.path.name}[:, {k}]", array[:, k])
            for k, name in enumerate(pde.channels)
        ]


def _channel(name: str, origin: str, array: np.ndarray) -> ChannelData:
    return ChannelData(
        name, origin, array.shape[0], (array.shape[1], array.shape[2]), array.dtype,
        lambda start, stop: array[start:stop],
    )  # fmt: skip
