"""Read a pirf fields file back: :func:`load` -> :class:`PDEDataset`.

>>> data = pirf.data.load("runs/poisson/train.h5")
>>> data.pde, len(data), data.channels, data.normalisation
>>> batch = data[:16]                          # physical units, float32 (16, C, R, R)
>>> train = data.torch_dataset()               # normalised samples for a DataLoader

The PDE is rebuilt from the registry with the stored parameters, so the residual of a
file's fields is one call away: ``data.pde.residual(data[:16].double())``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

import pirf.pdes
from pirf.data.format import FIELDS, Header, open_file, read_error, read_header
from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation

Index = int | slice | Sequence[int] | np.ndarray | torch.Tensor


def rebuild_pde(header: Header) -> PDE:
    """The file's PDE from the registry with its stored parameters (see
    :func:`pirf.pdes.from_metadata`; a user PDE is found by its stored ``pde_class``)."""
    metadata = {
        "pde": header.pde_name,
        "params": header.params,
        "channels": list(header.channels),
        "pde_class": header.attrs.get("pde_class"),
    }
    return pirf.pdes.from_metadata(metadata, source=str(header.path))


class PDEDataset:
    """A fields file opened for reading: metadata, the rebuilt PDE, and sample access.

    Indexing reads from the file (``data[3]`` -> ``(C, R, R)``, ``data[2:5]`` or
    ``data[[4, 1]]`` -> ``(k, C, R, R)``), in physical units as float32. Reads check that
    the values are finite and that the data is intact (HDF5 checksums).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        file = open_file(self.path)
        try:
            self.header = read_header(file, self.path)
            self.pde = rebuild_pde(self.header)
        except BaseException:
            file.close()
            raise
        self._file: h5py.File | None = file
        self._pid = os.getpid()

    # ---------------------------------------------------------------------------- metadata
    @property
    def channels(self) -> tuple[str, ...]:
        return self.header.channels

    @property
    def input_channels(self) -> tuple[str, ...]:
        return self.header.input_channels

    @property
    def normalisation(self) -> Normalisation:
        """``model = (physical - shift) / scale`` per channel, as stored in the file."""
        return self.header.normalisation

    @property
    def resolution(self) -> int:
        return self.header.resolution

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.header.shape

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.header.params)

    @property
    def attrs(self) -> dict[str, Any]:
        """Every root attribute of the file, decoded."""
        return dict(self.header.attrs)

    @property
    def seed(self) -> int | None:
        return self.header.attrs.get("seed")

    @property
    def split(self) -> str | None:
        return self.header.attrs.get("split")

    def __len__(self) -> int:
        return self.header.n

    def __repr__(self) -> str:
        return (
            f"PDEDataset('{self.path}', pde={self.pde!r}, n={len(self)}, "
            f"shape={self.shape}, split={self.split!r}, seed={self.seed!r})"
        )

    # ---------------------------------------------------------------------------- reading
    def __getitem__(self, index: Index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            position = int(index) + len(self) if index < 0 else int(index)
            if not 0 <= position < len(self):
                raise IndexError(f"sample {index} out of range for {len(self)} samples")
            return self._read(slice(position, position + 1), first=position)[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self._gather(np.arange(start, stop, step))
            return self._read(slice(start, max(start, stop)), first=start)
        return self._gather(np.asarray(index, dtype=np.int64).reshape(-1))

    def _gather(self, indices: np.ndarray) -> torch.Tensor:
        """Samples at arbitrary indices (HDF5 wants increasing ones: read unique, reorder)."""
        indices = np.where(indices < 0, indices + len(self), indices)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"sample index out of range for {len(self)} samples")
        unique, inverse = np.unique(indices, return_inverse=True)
        if unique.size == 0:
            return torch.empty((0, *self.shape[1:]), dtype=torch.float32)
        return self._read(unique, first=None)[torch.from_numpy(inverse)]

    def _read(self, selection: slice | np.ndarray, *, first: int | None) -> torch.Tensor:
        try:
            values = self._handle()[FIELDS][selection]
        except (OSError, RuntimeError) as error:
            raise read_error(self.path, error) from None
        fields = torch.from_numpy(np.ascontiguousarray(values))
        finite = torch.isfinite(fields).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            sample = first + bad if first is not None else int(np.asarray(selection)[bad])
            raise PirfError(f"{self.path}: sample {sample} holds NaN or inf")
        return fields

    def batches(self, batch_size: int = 64) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, fields)`` for consecutive batches of the whole file."""
        if batch_size <= 0:
            raise PirfError(f"the batch size must be positive, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield start, self[start : start + batch_size]

    def fields(self, *, device: torch.device | str | None = None) -> torch.Tensor:
        """All samples ``(N, C, R, R)`` in physical units (float32), optionally on ``device``."""
        fields = self[:]
        return fields if device is None else fields.to(device)

    def torch_dataset(self, *, normalised: bool = True, in_memory: bool = True) -> FieldsDataset:
        """A ``torch.utils.data.Dataset`` of single samples ``(C, R, R)`` for training.

        ``normalised``: in model space (the file's normalisation), else physical units.
        ``in_memory``: read the whole file once (fast epochs); else read per item.
        """
        return FieldsDataset(self, normalised=normalised, in_memory=in_memory)

    # ---------------------------------------------------------------------------- lifetime
    def _handle(self) -> h5py.File:
        """The open file; reopened after :meth:`close`, unpickling, or in a forked worker
        (HDF5 handles must not be shared across processes)."""
        if self._file is None or self._pid != os.getpid():
            self._file = open_file(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the file (reading again reopens it)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PDEDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for DataLoader workers: the file handle is reopened on first read."""
        return {**self.__dict__, "_file": None}


class FieldsDataset(Dataset):
    """Single samples ``(C, R, R)`` of a :class:`PDEDataset`, normalised or physical."""

    def __init__(self, source: PDEDataset, *, normalised: bool, in_memory: bool) -> None:
        self.source = source
        self.normalised = normalised
        self._memory: torch.Tensor | None = None
        if in_memory:
            self._memory = self._convert(source.fields())

    def _convert(self, fields: torch.Tensor) -> torch.Tensor:
        return self.source.normalisation.to_model(fields) if self.normalised else fields

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._memory is not None:
            return self._memory[index]
        return self._convert(self.source[index])


def load(path: str | Path) -> PDEDataset:
    """Open a fields file (a generated dataset or model samples); see :class:`PDEDataset`."""
    return PDEDataset(path)
