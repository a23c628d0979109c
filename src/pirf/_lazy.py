"""Packages whose public names are imported from their submodules on first use.

``import pirf.finetune`` (and so ``pirf --help``) should not pay for torch, h5py and
matplotlib. A package calls :func:`lazy_exports` with the names each submodule provides;
``pirf.finetune.finetune`` or ``from pirf.finetune import finetune`` then imports
``pirf.finetune.run`` the first time the name is asked for (PEP 562), and ``dir()`` and
``__all__`` list every name as before.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

_ORIGINS = "_lazy_origins"


class LazyPackage(types.ModuleType):
    """A package module that resolves its exported names on first access."""

    def __getattr__(self, name: str) -> Any:
        # Called only for names not yet in the module's namespace.
        origin = self.__dict__.get(_ORIGINS, {}).get(name)
        if origin is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(origin), name)
        self.__dict__[name] = value
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get(_ORIGINS, {})))

    def __setattr__(self, name: str, value: Any) -> None:
        # Once a submodule is imported, the import system binds it on its package. A
        # submodule named like the function it exports (pirf.data.generate) must not hide
        # that function: the package keeps the function, as an eager import would.
        origin = self.__dict__.get(_ORIGINS, {}).get(name)
        if isinstance(value, types.ModuleType) and value.__name__ == origin:
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]]) -> list[str]:
    """Make the module ``package`` import each of its public names on first access.

    ``exports`` maps a submodule name relative to the package (``"run"``) to the names it
    provides. Returns the sorted list of every name, for the package's ``__all__``.
    """
    if any(isinstance(names, str) for names in exports.values()):
        raise TypeError("lazy_exports takes a list of names per submodule, not a string")
    module = sys.modules[package]
    origins = {
        name: f"{package}.{submodule}" for submodule, names in exports.items() for name in names
    }
    module.__class__ = LazyPackage
    module.__dict__[_ORIGINS] = origins
    return sorted(origins)


__all__ = ["LazyPackage", "lazy_exports"]
