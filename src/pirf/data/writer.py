"""Write fields ``(N, C, H, W)`` and their metadata to a pirf fields file.

One writer serves generated datasets and model samples alike: chunks of samples stream in
(a dataset never has to fit in memory), per-channel statistics accumulate in float64 on
the stored float32 values, and the file appears under its name only once it is complete
(see :mod:`pirf.atomic`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

import pirf
from pirf.atomic import atomic_output, check_destination
from pirf.data.format import (
    FIELDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    REQUIRED_ATTRS,
    STORAGE_DTYPE,
    encode_attr,
)
from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import ChannelStats, Normalisation

COMPRESSIONS = (None, "lzf", "gzip")
"""Accepted ``compression`` values. None (the default) reads fastest; see docs/data-format.md."""


@dataclass(frozen=True)
class WriteSummary:
    """What was written: where, how many samples, their shape, statistics and normalisation."""

    path: Path
    n: int
    shape: tuple[int, int, int, int]
    channels: tuple[str, ...]
    normalisation: Normalisation
    channel_stats: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "n": self.n,
            "shape": list(self.shape),
            "channels": list(self.channels),
            "channel_stats": self.channel_stats,
            "normalisation": self.normalisation.to_json(),
        }


def stats_by_channel(stats: ChannelStats, channels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{channel: {mean, std, min, max}}`` from streamed statistics."""
    columns = zip(stats.mean(), stats.std(), stats.min(), stats.max(), strict=True)
    return {
        name: {"mean": mean, "std": std, "min": low, "max": high}
        for name, (mean, std, low, high) in zip(channels, columns, strict=True)
    }


class FieldWriter:
    """Appends chunks to the ``fields`` dataset of an open, new HDF5 file.

    Use through :func:`open_writer`, which owns the file and the atomic rename. The dataset
    is created at the first chunk (its shape fixes ``C``, ``H = W = resolution``).
    """

    def __init__(
        self,
        file: h5py.File,
        pde: PDE,
        *,
        n: int | None,
        normalisation: Normalisation | None,
        attrs: Mapping[str, Any],
        compression: str | None,
    ) -> None:
        self._file = file
        self.pde = pde
        self._expected = n
        self._normalisation = normalisation
        self._compression = compression
        self._dataset: h5py.Dataset | None = None
        self.stats = ChannelStats(len(pde.channels))
        self.count = 0
        self.summary: WriteSummary | None = None
        """Set by :meth:`finish`; its path is the final one once :func:`open_writer` is done."""
        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            **pde.metadata(),
            "pirf_version": pirf.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source": "user",
        }
        self.set_attrs(**header)
        self.set_attrs(**attrs)

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes (JSON-able values; ``None`` values are skipped)."""
        for name, value in attrs.items():
            if value is not None:
                self._file.attrs[name] = encode_attr(value)

    def append(self, chunk: torch.Tensor) -> None:
        """Append samples ``(B, C, R, R)`` (any float dtype/device; stored as float32)."""
        if not isinstance(chunk, torch.Tensor):
            raise PirfError(f"fields must be torch tensors, got {type(chunk).__name__}")
        self.pde.check_fields(chunk)
        if chunk.shape[-1] != chunk.shape[-2]:
            raise PirfError(f"fields must be square (B, C, R, R), got {tuple(chunk.shape)}")
        stored = chunk.detach().to(device="cpu", dtype=torch.float32)
        finite = torch.isfinite(stored).flatten(1).all(dim=1)
        if not bool(finite.all()):
            first = self.count + int((~finite).nonzero()[0, 0])
            raise PirfError(
                f"sample {first} holds NaN or inf (after conversion to float32); "
                "nothing was written"
            )
        dataset = self._dataset_for(stored)
        if dataset.shape[1:] != stored.shape[1:]:
            raise PirfError(
                f"all chunks must have shape (B, {', '.join(map(str, dataset.shape[1:]))}), "
                f"got {tuple(stored.shape)}"
            )
        self.stats.update(stored)
        start, self.count = self.count, self.count + stored.shape[0]
        try:
            dataset.resize(self.count, axis=0)
            dataset[start : self.count] = stored.numpy()
        except OSError as error:
            raise PirfError(f"cannot write {self._file.filename}: {error}") from None

    def _dataset_for(self, chunk: torch.Tensor) -> h5py.Dataset:
        if self._dataset is None:
            _, channels, height, width = chunk.shape
            self._dataset = self._file.create_dataset(
                FIELDS,
                shape=(0, channels, height, width),
                maxshape=(None, channels, height, width),
                chunks=(1, channels, height, width),
                dtype=STORAGE_DTYPE,
                compression=self._compression,
                fletcher32=True,
            )
            self._dataset.attrs["units"] = "physical"
            self._dataset.attrs["dims"] = encode_attr(["sample", "channel", *self.pde.grid.axes])
            self.set_attrs(resolution=int(height))
        return self._dataset

    def finish(self) -> WriteSummary:
        """Check the count and store the normalisation (given, or from these fields).

        Called by :func:`open_writer` when its block completes; returns the summary."""
        if self.count == 0 or self._dataset is None:
            raise PirfError("no samples to write")
        if self._expected is not None and self.count != self._expected:
            raise PirfError(f"expected {self._expected} samples, got {self.count}")
        normalisation = self._normalisation or Normalisation.from_stats(self.stats)
        if normalisation.channels != len(self.pde.channels):
            raise PirfError(
                f"normalisation has {normalisation.channels} channels, the PDE has "
                f"{len(self.pde.channels)}"
            )
        self._file.attrs["norm_shift"] = np.asarray(normalisation.shift, dtype=np.float64)
        self._file.attrs["norm_scale"] = np.asarray(normalisation.scale, dtype=np.float64)
        self.summary = WriteSummary(
            path=Path(self._file.filename),
            n=self.count,
            shape=tuple(self._dataset.shape),  # type: ignore[arg-type]
            channels=tuple(self.pde.channels),
            normalisation=normalisation,
            channel_stats=stats_by_channel(self.stats, tuple(self.pde.channels)),
        )
        return self.summary


@contextlib.contextmanager
def open_writer(
    path: str | Path,
    pde: PDE,
    *,
    n: int | None = None,
    normalisation: Normalisation | None = None,
    attrs: Mapping[str, Any] | None = None,
    force: bool = False,
    compression: str | None = None,
) -> Iterator[FieldWriter]:
    """Open a new fields file for streaming writes; it appears at ``path`` only when the
    block completes (then ``writer.finish()`` has stored the normalisation).

    ``normalisation``: store this one (e.g. a model's) instead of the fields' own.
    ``attrs``: extra root attributes (may not replace the required ones).
    """
    attrs = dict(attrs or {})
    _check_options(attrs, compression, n)
    destination = check_destination(path, force=force)
    with atomic_output(destination, force=force) as temporary:
        try:
            file = h5py.File(temporary, "w-")
        except OSError as error:
            raise PirfError(f"cannot create {temporary}: {error}") from None
        with file:
            writer = FieldWriter(
                file, pde, n=n, normalisation=normalisation, attrs=attrs, compression=compression
            )
            yield writer
            writer.finish()
    writer.summary = dataclasses.replace(writer.summary, path=destination)


def _check_options(attrs: Mapping[str, Any], compression: str | None, n: int | None) -> None:
    reserved = sorted(set(attrs) & {*REQUIRED_ATTRS, "pde_class", "pirf_version", "created"})
    if reserved:
        raise PirfError(f"extra attributes may not replace {', '.join(reserved)}")
    if compression not in COMPRESSIONS:
        raise PirfError(f"unknown compression {compression!r}; use none, lzf or gzip")
    if n is not None and n <= 0:
        raise PirfError(f"the number of samples must be positive, got {n}")


def write_fields(
    path: str | Path,
    fields: torch.Tensor | Iterable[torch.Tensor],
    pde: PDE,
    *,
    normalisation: Normalisation | None = None,
    attrs: Mapping[str, Any] | None = None,
    force: bool = False,
    compression: str | None = None,
    chunk_size: int = 256,
) -> WriteSummary:
    """Write ``fields`` (a tensor ``(N, C, R, R)`` or an iterable of such chunks, physical
    units) for ``pde`` to ``path``, atomically. Returns what was written.

    >>> write_fields("samples.h5", samples, pirf.pdes.get("poisson"),
    ...              normalisation=model.normalisation, attrs={"source": "model"})
    """
    chunks = fields.split(chunk_size) if isinstance(fields, torch.Tensor) else fields
    with open_writer(
        path,
        pde,
        normalisation=normalisation,
        attrs=attrs,
        force=force,
        compression=compression,
    ) as writer:
        for chunk in chunks:
            writer.append(chunk)
    assert writer.summary is not None  # set by open_writer on success
    return writer.summary
