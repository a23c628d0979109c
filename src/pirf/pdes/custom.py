"""Define a PDE from plain functions, without writing a class.

``define_pde`` is the shortest way in for a user's own equation: a residual function and
channel names are enough to fine-tune and evaluate; an input sampler and a solver make
``pirf data generate`` work too, and the optional hooks (``consistency``, ``snap``,
``precondition``, ...) are those of :class:`~pirf.pdes.base.PDE`.

The class it makes is registered under its name and records where it lives: its
``__module__`` is the module that called ``define_pde`` (or ``module=``) and its name a
module-level name, so files and checkpoints store an importable ``module:Class`` and read
back in any process that imports that module (``PIRF_PLUGINS``, ``pirf --plugin``).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pirf.errors import PirfError
from pirf.pdes.base import PDE
from pirf.pdes.grid import UNIT_SQUARE_NODES, Grid

Hook = Callable[..., Any]
"""A function of the hook's arguments, optionally also taking ``pde`` (the instance) or
``params`` (its parameters) as keyword arguments."""

_EXTRAS = ("pde", "params")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _extras(function: Hook, what: str) -> tuple[str, ...]:
    """Which of ``pde`` and ``params`` ``function`` takes by name."""
    if not callable(function):
        raise PirfError(f"define_pde: {what} must be a function, got {type(function).__name__}")
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature: plain arguments only
        return ()
    return tuple(name for name in _EXTRAS if name in parameters)


def _method(function: Hook, what: str) -> Callable[..., Any]:
    """``function`` as a method: called with the hook's arguments, plus ``pde=self`` and
    ``params=self.params`` where its signature asks for them."""
    extras = _extras(function, what)

    def method(self: PDE, *args: Any) -> Any:
        keywords = {"pde": self, "params": self.params}
        return function(*args, **{name: keywords[name] for name in extras})

    method.__name__ = what
    method.__doc__ = getattr(function, "__doc__", None)
    return method


def _class_name(name: str) -> str:
    """``"heat-steady"`` -> ``"HeatSteady"``: the default module-level name of the class."""
    parts = [part for part in re.split(r"[^0-9A-Za-z]+", name) if part]
    candidate = "".join(part[:1].upper() + part[1:] for part in parts) or "UserPDE"
    return candidate if _IDENTIFIER.match(candidate) else f"PDE{candidate}"


def _caller_module() -> str:
    """The ``__name__`` of the module that called :func:`define_pde`."""
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__") or "__main__")


def _checked_channels(name: str, channels: Any, inputs: Any) -> tuple[tuple, tuple]:
    channels = tuple(channels)
    inputs = tuple(inputs)
    if not channels or not all(isinstance(c, str) and c for c in channels):
        raise PirfError(f"define_pde('{name}'): channels must be non-empty names")
    if len(set(channels)) != len(channels):
        raise PirfError(f"define_pde('{name}'): channel names repeat: {list(channels)}")
    unknown = [c for c in inputs if c not in channels]
    if unknown:
        raise PirfError(
            f"define_pde('{name}'): input channels {unknown} are not among the channels "
            f"{list(channels)}"
        )
    return channels, inputs


def _checked_params(name: str, default_params: Any, presets: Any) -> tuple[dict, dict]:
    params = dict(default_params or {})
    presets = {key: dict(value) for key, value in dict(presets or {}).items()}
    try:
        json.dumps(params, allow_nan=False)
        json.dumps(presets, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PirfError(
            f"define_pde('{name}'): default_params and presets must be JSON values ({error})"
        ) from None
    for preset, config in presets.items():
        unknown = sorted(set(config.get("params", {})) - set(params))
        if unknown:
            raise PirfError(
                f"define_pde('{name}'): preset '{preset}' sets unknown parameter(s) "
                f"{', '.join(unknown)}; declare them in default_params"
            )
    return params, presets


def define_pde(
    name: str,
    channels: tuple[str, ...] | list[str],
    residual: Hook,
    *,
    input_channels: tuple[str, ...] | list[str] = (),
    grid: Grid = UNIT_SQUARE_NODES,
    default_params: Mapping[str, Any] | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    sample_inputs: Hook | None = None,
    solve: Hook | None = None,
    consistency: Hook | None = None,
    snap: Hook | None = None,
    reward_fields: Hook | None = None,
    precondition: Hook | None = None,
    reference_residual: Hook | None = None,
    input_mask: Hook | None = None,
    position_harmonics: tuple[tuple[int, int], ...] = (),
    min_resolution: int = 8,
    description: str = "",
    module: str | None = None,
    class_name: str | None = None,
    register: bool = True,
) -> type[PDE]:
    """Build a :class:`PDE` subclass from functions, and register it under ``name``.

    Hooks and their arguments (each may also take ``pde=`` or ``params=`` by keyword, to
    read the instance or its parameters): ``residual(fields)`` maps physical fields
    ``(B, C, H, W)`` to the residual where it is defined; ``sample_inputs(generators,
    resolution)`` draws one unit per generator on the CPU; ``solve(inputs)`` returns fields
    ``(B, C, H, W)``; ``consistency(fields)`` the per-sample distance ``(B,)`` to a
    re-solve; ``snap(fields)`` projects samples onto admissible values;
    ``reward_fields(fields)``, ``precondition(residual, fields)``,
    ``reference_residual(fields)`` and ``input_mask(height, width)`` are the base class's
    hooks of the same names.
    ``default_params`` are the parameters (JSON values) instances may override;
    ``presets`` named configurations ``{"tiny": {"resolution": 32, "params": {...}}}``.

    The class lives in ``module`` (default: the calling module) under ``class_name``
    (default: ``name`` in CamelCase): assign it to that module-level name, e.g.
    ``Heat = define_pde("heat", ...)``, so that files store an importable
    ``module:Class``. With ``register`` it joins the registry at once; defining the same
    class again (a module imported twice) replaces it, another PDE of the same name is an
    error.
    """
    if not isinstance(name, str) or not name.strip():
        raise PirfError("define_pde needs a non-empty name")
    channels, inputs = _checked_channels(name, channels, input_channels)
    params, presets_checked = _checked_params(name, default_params, presets)
    if not isinstance(grid, Grid):
        raise PirfError(f"define_pde('{name}'): grid must be a pirf.pdes.Grid")
    class_name = class_name or _class_name(name)
    if not _IDENTIFIER.match(class_name):
        raise PirfError(f"define_pde('{name}'): class_name {class_name!r} is not an identifier")
    module = module or _caller_module()
    harmonics = tuple((int(axis), int(cycles)) for axis, cycles in position_harmonics)
    namespace: dict[str, Any] = {
        "name": name,
        "channels": channels,
        "input_channels": inputs,
        "grid": grid,
        "default_params": params,
        "presets": presets_checked,
        "min_resolution": int(min_resolution),
        "description": description,
        "residual": _method(residual, "residual"),
        "position_harmonics": lambda self: harmonics,
        "__doc__": description or f"User-defined PDE '{name}'.",
        "__module__": module,
        "__qualname__": class_name,
    }
    hooks = {
        "sample_inputs": sample_inputs,
        "solve": solve,
        "consistency": consistency,
        "snap": snap,
        "reward_fields": reward_fields,
        "precondition": precondition,
        "reference_residual": reference_residual,
        "input_mask": input_mask,
    }
    for hook, function in hooks.items():
        if function is not None:
            namespace[hook] = _method(function, hook)
    pde_class = type(class_name, (PDE,), namespace)
    if register:
        from pirf.pdes import register_defined

        register_defined(pde_class)
    return pde_class
