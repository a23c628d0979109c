"""pirf: physics-informed reward fine-tuning of diffusion models for PDE data.

The package is organised along the data flow
PDE definition -> dataset -> base model -> fine-tuned model -> samples -> report;
each arrow is a file on disk that the next stage reads.
"""

from typing import Any

from pirf.errors import PirfError


def _version() -> str:
    """The installed distribution's version (read once, when first asked for)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pirf")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    # PEP 562: reading the package metadata costs more than the rest of `import pirf`.
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    raise AttributeError(f"module 'pirf' has no attribute {name!r}")


__all__ = ["PirfError", "__version__"]
