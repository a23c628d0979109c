"""Community data: import PDEBench, The Well and ``.npy`` datasets, export to the first two.

>>> import pirf.data
>>> pirf.data.import_fields("sol_dir", "darcy.h5", format="npy", pde="darcy",
...                         channels={"a": "coef.npy", "u": "sol.npy"})
>>> pirf.data.export_fields("darcy.h5", "darcy.hdf5", format="the-well")

Each format is a small module (:mod:`.pdebench`, :mod:`.the_well`, :mod:`.npy`) that maps
its layout onto a PDE's channels; :mod:`.importing` checks everything and writes a pirf
fields file, :mod:`.exporting` writes the layouts with pirf's metadata in attributes so a
round trip is exact. docs/data-format.md ("Importing and exporting") documents the layouts.
"""

from pirf.data.interchange.exporting import WRITERS, ExportSummary, export_fields
from pirf.data.interchange.importing import READERS, ImportSummary, import_fields

IMPORT_FORMATS = tuple(READERS)
"""Formats :func:`import_fields` reads."""
EXPORT_FORMATS = tuple(WRITERS)
"""Formats :func:`export_fields` writes."""

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "ExportSummary",
    "ImportSummary",
    "export_fields",
    "import_fields",
]
