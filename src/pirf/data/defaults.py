"""Defaults of data generation, in a module the command line reads without loading the
solvers (``pirf data generate --help`` shows them)."""

DEFAULT_BATCH_SIZE = 64
"""Random units solved together when none is given."""

__all__ = ["DEFAULT_BATCH_SIZE"]
