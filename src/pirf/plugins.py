"""User modules imported before any command: the way a user's own PDE reaches every command.

A module that defines a PDE with :func:`pirf.pdes.define_pde` (or registers a subclass)
makes it known to the registry when it is imported. ``PIRF_PLUGINS=module[,module]`` in the
environment, or ``pirf --plugin MODULE`` (repeatable), imports such modules first, so
``pirf data generate heat``, ``pirf data check``, ``pirf train`` and every later command
find the PDE by its name, and files made with it read back, without packaging the module.

The registry itself also imports the ``PIRF_PLUGINS`` modules before it calls a name
unknown, so Python code and worker processes see the same PDEs as the command line.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable

from pirf.errors import PirfError

ENVIRONMENT = "PIRF_PLUGINS"
"""The environment variable that names plugin modules, separated by commas."""

_loaded: set[str] = set()


def plugin_names(value: str | None) -> list[str]:
    """The module names of a ``PIRF_PLUGINS`` value: split at commas, blanks dropped."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def load_plugins(modules: Iterable[str], *, source: str) -> list[str]:
    """Import each module of ``modules`` (once per process); returns the names imported.

    ``source`` says where the names came from (``--plugin``, ``PIRF_PLUGINS``), for the one
    line a module that fails to import becomes.
    """
    imported = []
    for name in modules:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except PirfError as error:
            raise PirfError(f"plugin module '{name}' (from {source}) failed: {error}") from None
        except Exception as error:  # any failure of a user's module is reported in one line
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            reason = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
            raise PirfError(
                f"cannot import plugin module '{name}' (from {source}): {reason}; check that "
                "it is on PYTHONPATH and imports without errors"
            ) from None
        _loaded.add(name)
        imported.append(name)
    return imported


def load_environment_plugins() -> list[str]:
    """Import the modules ``PIRF_PLUGINS`` names (nothing if it is unset or empty)."""
    return load_plugins(plugin_names(os.environ.get(ENVIRONMENT)), source=ENVIRONMENT)


__all__ = ["ENVIRONMENT", "load_environment_plugins", "load_plugins", "plugin_names"]
