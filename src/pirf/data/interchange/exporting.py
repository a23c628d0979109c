"""``export_fields``: a pirf fields file in a community layout (PDEBench or The Well).

The fields are copied as stored (float32, physical units), so importing the export gives
back the same bits. Each layout keeps its own conventions (datasets, coordinates,
attributes) and, in root attributes prefixed ``pirf_``, every attribute of the pirf file:
the PDE, its parameters, grid and normalisation travel with the data, and
:func:`~pirf.data.interchange.importing.import_fields` restores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from pirf.atomic import atomic_output, check_destination
from pirf.data.format import open_file
from pirf.data.interchange import pdebench, the_well
from pirf.data.interchange.layout import pirf_attrs
from pirf.data.loader import load
from pirf.errors import PirfError, option

WRITERS: dict[str, Any] = {"pdebench": pdebench, "the-well": the_well}
"""Export formats by name: modules with ``layout(pde)`` and ``create_datasets(...)``."""
CHUNK = 256
"""Samples copied together."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: where, in which layout, and its datasets' shapes."""

    path: Path
    source: Path
    format: str
    layout: str
    n: int
    datasets: dict[str, list[int]]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": str(self.source),
            "format": self.format,
            "layout": self.layout,
            "n": self.n,
            "datasets": self.datasets,
            "seconds": self.seconds,
        }


def export_fields(
    path: str | Path,
    out: str | Path,
    *,
    format: str,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the pirf fields file ``path`` to ``out`` in ``format`` (``pdebench`` or
    ``the-well``), all-or-nothing. See docs/data-format.md for the layouts.

    >>> pirf.data.export_fields("darcy-test.h5", "darcy-test.hdf5", format="the-well")
    """
    start = time.perf_counter()
    if format not in WRITERS:
        raise PirfError(f"unknown export format '{format}'; use {', '.join(WRITERS)}")
    destination = check_destination(out, force=force, name="out", flag="--out-file")
    path = Path(path)
    if path.exists() and path.resolve() == destination.resolve():
        raise PirfError(f"{option('out', flag='--out-file')} must differ from the source {path}")
    module = WRITERS[format]
    with load(path) as data:
        with open_file(path) as source:
            attrs = dict(source.attrs.items())
        with atomic_output(destination, force=force) as temporary:
            try:
                file = h5py.File(temporary, "w-")
            except OSError as error:
                raise PirfError(f"cannot create {temporary}: {error}") from None
            with file:
                write = module.create_datasets(file, data.pde, data.shape)
                for name, value in pirf_attrs(attrs).items():
                    file.attrs[name] = value
                for first, fields in data.batches(CHUNK):
                    write(first, fields.numpy())
                    if progress is not None and len(data) > CHUNK:  # long work only
                        progress(first + len(fields), len(data))
                datasets = _shapes(file)
        return ExportSummary(
            path=destination,
            source=path,
            format=format,
            layout=module.layout(data.pde),
            n=len(data),
            datasets=datasets,
            seconds=time.perf_counter() - start,
        )


def _shapes(file: h5py.File) -> dict[str, list[int]]:
    """``{dataset path: shape}`` of every dataset in the file."""
    shapes: dict[str, list[int]] = {}
    file.visititems(
        lambda name, item: (
            shapes.__setitem__(name, list(item.shape)) if isinstance(item, h5py.Dataset) else None
        )
    )
    return shapes
