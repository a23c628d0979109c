"""pirf: physics-informed reward fine-tuning of diffusion models for PDE data.

The package is organised along the data flow
PDE definition -> dataset -> base model -> fine-tuned model -> samples -> report;
each arrow is a file on disk that the next stage reads.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pirf")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from pirf.errors import PirfError

__all__ = ["PirfError", "__version__"]
