"""``import_fields``: a community dataset (PDEBench, The Well, ``.npy``) as a pirf file.

Everything is checked before the first sample is written: the format and options, the
destination, the PDE, that every channel is found with the same samples and square grid
the PDE accepts. Then the fields stream into a pirf fields file (float32, physical units,
all-or-nothing like every pirf file). The file records where it came from
(``import_format``, ``import_source``, ``import_channels``) and how the source's
coordinates compare with the PDE's grid (``import_grid``), which ``pirf data check``
shows beside the residual: a dataset sampled on cell centres scores a residual that
reveals it, because pirf's stencils assume its own points.

A file that pirf exported carries pirf's attributes; importing it restores the PDE, its
parameters, the normalisation and the generation attributes, so the round trip is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pirf.pdes
from pirf.atomic import check_destination
from pirf.data.format import REQUIRED_ATTRS
from pirf.data.interchange.layout import ChannelData, Reader, compare_grid, grid_matches
from pirf.data.interchange.npy import NpyReader
from pirf.data.interchange.pdebench import PDEBenchReader
from pirf.data.interchange.the_well import WellReader
from pirf.data.writer import COMPRESSIONS, WriteSummary, open_writer
from pirf.errors import PirfError, option
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation

READERS: dict[str, Callable[[Path], Reader]] = {
    "pdebench": PDEBenchReader,
    "the-well": WellReader,
    "npy": NpyReader,
}
"""Import formats by name."""
CHUNK = 256
"""Samples read and written together."""
WRITER_OWNED = (*REQUIRED_ATTRS, "pde_class", "pirf_version", "created")
"""Attributes the writer sets itself; an export's copies of them are not restored."""


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote and how the source mapped onto the PDE."""

    source: Path
    format: str
    pde: PDE
    channels: dict[str, str]
    """PDE channel -> where it came from in the source."""
    grid: list[dict[str, Any]]
    """Per axis: pirf's convention, the source's coordinates, whether they match."""
    restored: bool
    """Whether the source carried pirf's metadata (an export), now restored."""
    written: WriteSummary
    seconds: float

    @property
    def grid_matches(self) -> bool | None:
        return grid_matches(self.grid)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.written.to_json(),
            "source": str(self.source),
            "format": self.format,
            "pde": self.pde.name,
            "params": self.pde.params,
            "mapping": self.channels,
            "grid": self.grid,
            "grid_matches": self.grid_matches,
            "pirf_metadata": self.restored,
            "seconds": self.seconds,
        }


def import_fields(
    source: str | Path,
    out: str | Path,
    *,
    format: str,
    pde: str | PDE | None = None,
    params: Mapping[str, Any] | None = None,
    channels: Mapping[str, str] | None = None,
    n: int | None = None,
    force: bool = False,
    compression: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Convert ``source`` (``format``: ``pdebench``, ``the-well`` or ``npy``) into the pirf
    fields file ``out``.

    ``pde``: the PDE the fields belong to (a name, ``module:Class`` or an instance); may be
    omitted for a file pirf exported. ``params`` override its parameters. ``channels``
    maps PDE channels to their source (``{"a": "coef.npy"}``, ``{"u": "tracer"}``) where
    names differ. ``n``: import only the first ``n`` samples.

    >>> pirf.data.import_fields("2D_DarcyFlow_beta1.0_Train.hdf5", "darcy.h5",
    ...     format="pdebench", pde="darcy", params={"forcing": 1.0})
    """
    start = time.perf_counter()
    if format not in READERS:
        raise PirfError(f"unknown import format '{format}'; use {', '.join(READERS)}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise PirfError(f"the number of samples must be positive, got {n!r}")
    if compression not in COMPRESSIONS:
        raise PirfError(f"unknown compression {compression!r}; use none, lzf or gzip")
    if isinstance(pde, PDE) and params:
        raise PirfError("give a PDE name, not an instance, together with params")
    destination = check_destination(out, force=force, name="out", flag="--out-file")
    source = Path(source)
    if source.exists() and source.resolve() == destination.resolve():
        raise PirfError(f"{option('out', flag='--out-file')} must differ from the source {source}")
    reader = READERS[format](source)
    try:
        metadata = reader.pirf_metadata()
        instance = resolve_import_pde(pde, dict(params or {}), metadata, source)
        mapping = dict(channels or {})
        unknown = sorted(set(mapping) - set(instance.channels))
        if unknown:
            raise PirfError(
                f"--channel names {', '.join(unknown)}, not channels of PDE '{instance.name}' "
                f"({', '.join(instance.channels)})"
            )
        found = reader.channels(instance, mapping)
        count, shape = check_channels(found, instance, source)
        if n is not None and n > count:
            raise PirfError(f"{source} holds {count} samples; cannot import {n}")
        total = count if n is None else n
        grid = compare_grid(instance.grid, shape, reader.coordinates(instance))
        restored = metadata is not None and metadata.get("pde") == instance.name
        attrs = restored_attrs(metadata) if restored else {"source": "imported"}
        attrs.update(
            import_format=format,
            import_source=source.name,
            import_channels={item.name: item.origin for item in found},
            import_grid=grid,
        )
        normalisation = stored_normalisation(metadata, instance) if restored else None
        with open_writer(
            destination, instance, n=total, normalisation=normalisation, attrs=attrs,
            force=force, compression=compression,
        ) as writer:  # fmt: skip
            for first in range(0, total, CHUNK):
                last = min(first + CHUNK, total)
                writer.append(read_chunk(found, first, last, source))
                if progress is not None and total > CHUNK:  # long work only
                    progress(last, total)
    finally:
        reader.close()
    assert writer.summary is not None  # set by open_writer on success
    return ImportSummary(
        source=source,
        format=format,
        pde=instance,
        channels={item.name: item.origin for item in found},
        grid=grid,
        restored=restored,
        written=writer.summary,
        seconds=time.perf_counter() - start,
    )


def resolve_import_pde(
    pde: str | PDE | None,
    params: dict[str, Any],
    metadata: dict[str, Any] | None,
    source: Path,
) -> PDE:
    """The PDE to import for: the one named (with the exported parameters when the source
    is an export of that PDE), or the one an export names; ``params`` override."""
    if isinstance(pde, PDE):
        return pde
    if pde is None and metadata is None:
        raise PirfError(f"{source} carries no pirf metadata; name its PDE with {option('pde')}")
    if pde is not None:
        pde_class = pirf.pdes.get_class(pde)
        if metadata is None or metadata.get("pde") != pde_class.name:
            try:
                return pde_class(**params)
            except (TypeError, ValueError) as error:
                raise PirfError(f"cannot build PDE '{pde}': {error}") from None
    assert metadata is not None
    stored = {
        "pde": metadata["pde"],
        "params": {**metadata["params"], **params},
        "channels": metadata.get("channels"),
        "pde_class": metadata.get("pde_class"),
    }
    return pirf.pdes.from_metadata(stored, source=str(source))


def check_channels(found: list[ChannelData], pde: PDE, source: Path) -> tuple[int, tuple[int, int]]:
    """The common sample count and grid of the channels, or a one-line error."""
    sizes = {(item.n, item.shape) for item in found}
    if len(sizes) != 1:
        described = ", ".join(
            f"{item.name} {item.origin}: {item.n} x {item.shape}" for item in found
        )
        raise PirfError(f"{source}: the channels disagree on samples or grid ({described})")
    count, shape = sizes.pop()
    if count == 0:
        raise PirfError(f"{source} holds no samples")
    if shape[0] != shape[1]:
        raise PirfError(
            f"{source}: the grid is {shape[0]} x {shape[1]}; pirf stores square grids R x R"
        )
    pde.check_resolution(shape[0])
    return count, shape


def read_chunk(found: list[ChannelData], first: int, last: int, source: Path) -> torch.Tensor:
    """Samples ``[first, last)`` of every channel as float32 ``(k, C, H, W)``."""
    try:
        parts = [np.asarray(item.read(first, last), dtype=np.float32) for item in found]
    except (OSError, RuntimeError) as error:
        raise PirfError(
            f"cannot read {source}: the file is corrupt or truncated ({error})"
        ) from None
    return torch.from_numpy(np.ascontiguousarray(np.stack(parts, axis=1)))


def restored_attrs(metadata: dict[str, Any]) -> dict[str, Any]:
    """The exported file's own attributes that the writer does not set itself."""
    return {name: value for name, value in metadata.items() if name not in WRITER_OWNED}


def stored_normalisation(metadata: dict[str, Any], pde: PDE) -> Normalisation | None:
    """The exported normalisation, when it has one entry per channel of ``pde``."""
    shift, scale = metadata.get("norm_shift"), metadata.get("norm_scale")
    if (
        not isinstance(shift, list)
        or not isinstance(scale, list)
        or len(shift) != len(pde.channels)
    ):
        return None
    try:
        return Normalisation(tuple(map(float, shift)), tuple(map(float, scale)))
    except (TypeError, ValueError, PirfError):
        return None
