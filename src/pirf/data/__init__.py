"""Datasets of PDE fields: generate them, write and read them, check them.

>>> import pirf.data
>>> summary = pirf.data.generate("poisson", n=256, resolution=32, seed=0, out="train.h5")
>>> data = pirf.data.load("train.h5")          # PDEDataset: pde, channels, normalisation...
>>> report = pirf.data.check("train.h5")       # statistics and residual of every sample
>>> pirf.data.export_fields("train.h5", "train.hdf5", format="the-well")   # and import_fields

Files are HDF5 with float32 fields in physical units and their metadata; the layout is
documented in docs/data-format.md. Model samples use the same layout (:func:`write_fields`).
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "check": ["check"],
        "format": ["FORMAT_VERSION", "Header"],
        "generate": [
            "GenerationSummary",
            "generate",
            "generate_chunks",
            "generate_splits",
            "resolve_pde",
        ],
        "interchange": ["ExportSummary", "ImportSummary", "export_fields", "import_fields"],
        "loader": ["FieldsDataset", "PDEDataset", "load"],
        "writer": ["WriteSummary", "open_writer", "write_fields"],
    },
)
