"""PDE benchmarks and the registry that finds them by name.

>>> import pirf.pdes
>>> pde = pirf.pdes.get("poisson")
>>> pirf.pdes.names()
['burgers', 'darcy', 'helmholtz', 'kolmogorov', 'poisson']

A user's PDE joins the registry in one of three ways, none of which edits pirf:

* ``pirf.pdes.register(MyPDE)`` in Python;
* an entry point in the user's package (group ``pirf.pdes``), found automatically;
* ``module:ClassName`` in place of a name, anywhere a PDE name is accepted.

A PDE made by :func:`define_pde` registers itself when its module is imported; the modules
named in ``PIRF_PLUGINS`` (:mod:`pirf.plugins`) are imported before a name is called
unknown.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pirf._lazy import lazy_exports
from pirf.errors import PirfError

if TYPE_CHECKING:
    from pirf.pdes.base import PDE

_REGISTRY: dict[str, type[PDE]] = {}
_BUILTINS = {
    "burgers": "pirf.pdes.burgers:Burgers",
    "darcy": "pirf.pdes.darcy:Darcy",
    "helmholtz": "pirf.pdes.helmholtz:Helmholtz",
    "kolmogorov": "pirf.pdes.kolmogorov:Kolmogorov",
    "poisson": "pirf.pdes.poisson:Poisson",
}
_ENTRY_POINT_GROUP = "pirf.pdes"


def register(pde_class: type[PDE], *, replace: bool = False) -> type[PDE]:
    """Add a :class:`PDE` subclass to the registry under its ``name``; usable as a decorator."""
    from pirf.pdes.base import PDE

    if not (isinstance(pde_class, type) and issubclass(pde_class, PDE)):
        raise PirfError(f"only PDE subclasses can be registered, got {pde_class!r}")
    name = getattr(pde_class, "name", None)
    if not isinstance(name, str) or not name:
        raise PirfError(f"{pde_class.__name__} needs a non-empty class attribute 'name'")
    if name in _all_names() and not replace and _lookup(name) is not pde_class:
        raise PirfError(f"a PDE named '{name}' is already registered; pass replace=True")
    _REGISTRY[name] = pde_class
    return pde_class


def _class_path(pde_class: type) -> str:
    """``module:QualifiedName`` of a class (what ``PDE.metadata()`` stores)."""
    return f"{pde_class.__module__}:{pde_class.__qualname__}"


def register_defined(pde_class: type[PDE]) -> type[PDE]:
    """Register a class made by :func:`define_pde`: a class defined again at the same
    ``module:Class`` (its module imported twice) replaces the first, any other PDE already
    registered under the name is an error."""
    name = pde_class.name
    existing = _REGISTRY.get(name)
    if name in _BUILTINS and (existing is None or _class_path(existing) != _class_path(pde_class)):
        raise PirfError(f"define_pde: '{name}' is a built-in PDE; choose another name")
    if existing is not None and _class_path(existing) != _class_path(pde_class):
        raise PirfError(
            f"define_pde: a PDE named '{name}' is already registered ({_class_path(existing)}); "
            "choose another name"
        )
    _REGISTRY[name] = pde_class
    return pde_class


def _import_target(target: str) -> Any:
    """The object ``module:Name`` names; a class :func:`define_pde` registered under that
    path is found even where the module binds it to another name."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a user's module may fail in any way: one line
        raise PirfError(f"cannot import PDE '{target}': {type(error).__name__}: {error}") from None
    found = getattr(module, attribute, None)
    if found is None:
        found = next((c for c in _REGISTRY.values() if _class_path(c) == target), None)
    if found is None:
        raise PirfError(
            f"cannot import PDE '{target}': module '{module_name}' has no attribute '{attribute}'"
        )
    return found


def _entry_point_names() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=_ENTRY_POINT_GROUP)}


def _all_names() -> set[str]:
    return set(_BUILTINS) | set(_REGISTRY) | set(_entry_point_names())


def _lookup(name: str) -> type[PDE]:
    from pirf.pdes.base import PDE

    if name in _REGISTRY:
        return _REGISTRY[name]
    target = _BUILTINS.get(name) or _entry_point_names().get(name)
    if target is None and ":" in name:
        target = name
    if target is None:
        from pirf.plugins import load_environment_plugins

        if load_environment_plugins() and name in _REGISTRY:
            return _REGISTRY[name]
        raise PirfError(
            f"unknown PDE '{name}'; known: {', '.join(names())} (a PDE of your own: import "
            "its module with pirf --plugin MODULE or PIRF_PLUGINS=MODULE)"
        )
    pde_class = _import_target(target)
    if not (isinstance(pde_class, type) and issubclass(pde_class, PDE)):
        raise PirfError(f"'{target}' is not a pirf.pdes.PDE subclass")
    _REGISTRY[name] = pde_class
    return pde_class


def get_class(name: str) -> type[PDE]:
    """The PDE class registered as ``name`` (or importable as ``module:Class``)."""
    return _lookup(name)


def get(name: str, *, preset: str | None = None, **params: Any) -> PDE:
    """An instance of PDE ``name``, optionally configured by a preset, with parameters."""
    pde_class = _lookup(name)
    if preset is not None:
        return pde_class.from_preset(preset, **params)
    return pde_class(**params)


def from_metadata(metadata: dict[str, Any], *, source: str = "file") -> PDE:
    """Rebuild the PDE a file or checkpoint describes (``PDE.metadata()``): by its name, or,
    for a user PDE the registry does not know, by its stored ``module:Class``; with the
    stored parameters; checking the stored channel names."""
    name = metadata.get("pde")
    if not isinstance(name, str):
        raise PirfError(f"{source} names no PDE")
    try:
        pde_class = _lookup(name)
    except PirfError as error:
        target = metadata.get("pde_class")
        pde_class = None
        problem = str(error)
        if isinstance(target, str) and ":" in target and not target.startswith("pirf."):
            try:
                candidate = _lookup(target)
            except PirfError as import_error:
                candidate = None
                problem = (
                    f"unknown PDE '{name}', made with {target}, which does not import here "
                    f"({import_error}); import its module with pirf --plugin MODULE or "
                    "PIRF_PLUGINS=MODULE"
                )
            if candidate is not None and getattr(candidate, "name", None) == name:
                pde_class = candidate
        if pde_class is None:
            raise PirfError(f"{source}: {problem}") from None
    try:
        pde = pde_class(**dict(metadata.get("params") or {}))
    except (PirfError, TypeError, ValueError) as error:
        raise PirfError(f"{source}: cannot rebuild PDE '{name}': {error}") from None
    channels = metadata.get("channels")
    if channels is not None and list(channels) != list(pde.channels):
        raise PirfError(
            f"{source}: stored channels {list(channels)} differ from PDE '{name}' channels "
            f"{list(pde.channels)}"
        )
    return pde


def names() -> list[str]:
    """Sorted names of every PDE the registry knows (built-in, registered, entry points)."""
    return sorted(_all_names())


def describe() -> list[dict[str, Any]]:
    """A listing: name, channels, description and presets of every known PDE."""
    rows = []
    for name in names():
        pde_class = _lookup(name)
        rows.append(
            {
                "name": name,
                "channels": list(pde_class.channels),
                "description": pde_class.description,
                "presets": {k: v.get("resolution") for k, v in pde_class.presets.items()},
            }
        )
    return rows


__all__ = [
    *lazy_exports(
        __name__,
        {
            "base": ["PDE", "relative_l2"],
            "custom": ["define_pde"],
            "grid": ["Grid"],
            "normalisation": ["ChannelStats", "Normalisation"],
        },
    ),
    "describe",
    "from_metadata",
    "get",
    "get_class",
    "names",
    "register",
    "register_defined",
]
