"""Run configurations as small nested dataclasses, and everything built from them.

A configuration (``TrainConfig``, ``FinetuneConfig``, ``BenchConfig``) is a dataclass of
*sections* (trajectory, trainable set, optimiser, evaluation, run files, ...), each a
dataclass of *settings*. A setting is declared once, with :func:`setting`: its help text,
its command-line flag and how text becomes its value. From that one declaration come

* the command-line options (:mod:`pirf.cli.generated`): names, help and defaults;
* the resolution of a run: a setting left at ``None`` was not given, and takes the value of
  the first layer that has one (a resumed run's stored values, a per-PDE recipe, the
  defaults; :func:`fill`), so the command line and the Python API resolve alike;
* ``config.toml`` in every run directory (:func:`to_toml`), which ``--config`` reads back
  (:func:`read_toml`, :func:`from_nested`) to reproduce the run.

Setting names are unique across the sections of one configuration: the flat name is the
Python keyword and, with dashes, the flag.

This module imports nothing heavy, so that ``pirf --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

META = "pirf"


@dataclass(frozen=True)
class Meta:
    """What a setting says about itself (see :func:`setting`)."""

    help: str
    flag: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    """Command-line text -> value (default: by the setting's type)."""
    cli: bool = True
    """Whether the command line offers it."""
    default: str | None = None
    """How the help states the default when it is not a plain value (e.g. "5 % of --iters")."""


def setting(
    help: str,
    *,
    default: Any = None,
    flag: str | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    cli: bool = True,
    shown_default: str | None = None,
) -> Any:
    """A setting of a section: ``None`` (not given) unless ``default`` says otherwise."""
    meta = Meta(help, flag, metavar, parse, cli, shown_default)
    return field(default=default, metadata={META: meta})


def section(kind: type) -> Any:
    """A section of a configuration (a dataclass of settings), empty by default."""
    return field(default_factory=kind)


def meta(item: dataclasses.Field) -> Meta | None:
    return item.metadata.get(META)


def _hints(kind: type) -> dict[str, Any]:
    module = sys.modules.get(kind.__module__)
    return typing.get_type_hints(kind, vars(module) if module else None)


@dataclass(frozen=True)
class Leaf:
    """One setting of a configuration class: where it sits and what it is."""

    path: tuple[str, ...]
    """Attribute names from the configuration down to the setting."""
    name: str
    meta: Meta
    annotation: Any

    @property
    def flag(self) -> str:
        return self.meta.flag or "--" + self.name.replace("_", "-")


def leaves(kind: type) -> list[Leaf]:
    """Every setting of configuration class ``kind``, sections expanded, in order."""
    found: list[Leaf] = []

    def visit(cls: type, prefix: tuple[str, ...]) -> None:
        hints = _hints(cls)
        for item in fields(cls):
            annotation = hints[item.name]
            if is_dataclass(annotation):
                visit(annotation, (*prefix, item.name))
            elif (described := meta(item)) is not None:
                found.append(Leaf((*prefix, item.name), item.name, described, annotation))

    visit(kind, ())
    names = [leaf.name for leaf in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TypeError(f"{kind.__name__}: setting names must be unique: {duplicates}")
    return found


def get(config: Any, path: tuple[str, ...]) -> Any:
    value = config
    for name in path:
        value = getattr(value, name)
    return value


def _set(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(config, **{path[0]: value})
    inner = _set(getattr(config, path[0]), path[1:], value)
    return replace(config, **{path[0]: inner})


def flat(config: Any) -> dict[str, Any]:
    """``{name: value}`` of every setting (``None`` where not given)."""
    return {leaf.name: get(config, leaf.path) for leaf in leaves(type(config))}


def given(config: Any) -> dict[str, Any]:
    """The settings that have a value."""
    return {name: value for name, value in flat(config).items() if value is not None}


def type_name(annotation: Any) -> str:
    """How a message names what a setting takes (``an integer``, ``a list of integers``)."""
    kind = _value_type(annotation)
    if typing.get_origin(kind) is tuple:
        return "a list of names" if _item_type(kind) is str else "a list of integers"
    if typing.get_origin(kind) is dict:
        return "a table of settings"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        Path: "a path",
    }.get(kind, str(kind))


def _value_type(annotation: Any) -> Any:
    args = [t for t in typing.get_args(annotation) if t is not type(None)]
    return args[0] if args else annotation


def _item_type(kind: Any) -> Any:
    """The item type of ``tuple[T, ...]`` (``int`` or ``str``)."""
    args = typing.get_args(kind)
    return args[0] if args else int


def checked_value(leaf: Leaf, value: Any) -> Any:
    """``value`` in the type of ``leaf`` (lists as tuples, strings as paths, integers as
    floats where a number goes); a value of another type is a one-line PirfError."""
    if value is None:
        return None
    kind = _value_type(leaf.annotation)
    origin = typing.get_origin(kind)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and number:
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    if origin is tuple and isinstance(value, list | tuple):
        item = _item_type(kind)
        if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            return tuple(value)
    if origin is dict and isinstance(value, Mapping):
        return dict(value)
    raise PirfError(f"{option(leaf.name)} expects {type_name(leaf.annotation)}, got {value!r}")


def with_values(config: Any, values: Mapping[str, Any]) -> Any:
    """``config`` with the settings ``values`` (flat names) replaced, each checked against
    its type (:func:`checked_value`); an unknown name is a :class:`PirfError` that lists
    the known ones."""
    by_name = {leaf.name: leaf for leaf in leaves(type(config))}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise PirfError(
            f"unknown setting(s) {', '.join(unknown)} for {type(config).__name__}; "
            f"known: {', '.join(by_name)}"
        )
    for name, value in values.items():
        leaf = by_name[name]
        config = _set(config, leaf.path, checked_value(leaf, value))
    return config


def build(kind: type, **values: Any) -> Any:
    """A configuration of class ``kind`` from flat setting names, e.g.
    ``build(FinetuneConfig, ckpt=..., out=..., truncation=5)``."""
    return with_values(kind(), values)


def fill(config: Any, *layers: Mapping[str, Any]) -> Any:
    """Each setting that is ``None`` takes its value from the first of ``layers`` (flat
    mappings) that holds one."""
    missing: dict[str, Any] = {}
    for name, value in flat(config).items():
        if value is not None:
            continue
        for layer in layers:
            if layer.get(name) is not None:
                missing[name] = layer[name]
                break
    return with_values(config, missing)


# --------------------------------------------------------------------------- runs
def record(config: Any) -> dict[str, Any]:
    """Every setting as a JSON value (paths as strings, tuples as lists): what a run's
    checkpoints store, flat."""
    return {name: _plain(value) for name, value in flat(config).items()}


def stored_values(
    kind: type, stored: Mapping[str, Any], aliases: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A run's stored settings (:func:`record`) as values of ``kind``: older names mapped
    by ``aliases``, lists as tuples, paths as paths, names ``kind`` lacks left out."""
    by_name = {leaf.name: leaf for leaf in leaves(kind)}
    values: dict[str, Any] = {}
    for key, value in stored.items():
        name = (aliases or {}).get(key, key)
        if name in by_name:
            values[name] = _coerce(by_name[name], value)
    return values


def refuse_changes(config: Any, stored: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """A resumed run must not change what the run computes: one-line error naming the
    first given setting that differs from the stored run (``allowed`` may differ)."""
    for name, value in flat(config).items():
        if value is None or name in allowed or name not in stored:
            continue
        before = stored[name]
        if _plain(value) != _plain(before):
            raise PirfError(
                f"{option('resume', True)}: {option(name)} is {_plain(value)!r} but the run "
                f"was made with {_plain(before)!r}; drop the option or start a new run in "
                f"another {option('out')} directory"
            )


# --------------------------------------------------------------------------- files
def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_nested(config: Any) -> dict[str, Any]:
    """The settings that have a value, by section, as plain values (paths as strings)."""
    nested: dict[str, Any] = {}
    for leaf in leaves(type(config)):
        value = get(config, leaf.path)
        if value is None:
            continue
        target = nested
        for name in leaf.path[:-1]:
            target = target.setdefault(name, {})
        target[leaf.path[-1]] = _plain(value)
    return nested


def _coerce(leaf: Leaf, value: Any) -> Any:
    """A value read from a file, in the setting's type (lists -> tuples, str -> Path)."""
    if value is None:
        return None
    types = [t for t in typing.get_args(leaf.annotation) if t is not type(None)] or [
        leaf.annotation
    ]
    kind = types[0]
    origin = typing.get_origin(kind)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_nested(kind: type, nested: Mapping[str, Any], *, source: str = "") -> Any:
    """A configuration of class ``kind`` from :func:`to_nested`'s form; a key that names no
    setting is a :class:`PirfError` (a typo must not pass silently)."""
    by_path = {leaf.path: leaf for leaf in leaves(kind)}
    values: dict[str, Any] = {}

    def visit(tree: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in tree.items():
            path = (*prefix, key)
            if path in by_path:
                values[by_path[path].name] = _coerce(by_path[path], value)
            elif isinstance(value, Mapping) and any(p[: len(path)] == path for p in by_path):
                visit(value, path)
            else:
                where = f" in {source}" if source else ""
                raise PirfError(
                    f"unknown setting '{'.'.join(path)}'{where}; known: "
                    + ", ".join(".".join(p) for p in by_path)
                )

    visit(nested, ())
    return build(kind, **values)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else _toml_value(key)


def to_toml(nested: Mapping[str, Any], header: str = "") -> str:
    """TOML text of :func:`to_nested`'s form: top-level values, then one table per section.
    Floats keep every digit (``repr``), so reading the file back gives the same run."""
    lines = [f"# {line}" for line in header.splitlines()]
    scalars = {k: v for k, v in nested.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in nested.items() if isinstance(v, Mapping)}
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items()]
    for name, table in tables.items():
        lines += ["", f"[{_toml_key(name)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file; a missing or malformed file is a one-line PirfError."""
    path = Path(path)
    if not path.is_file():
        raise PirfError(f"no such configuration file: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise PirfError(f"cannot read the configuration {path}: {reason}") from None


def load_config(kind: type, path: str | Path) -> Any:
    """A configuration of class ``kind`` from a ``config.toml`` (:func:`to_toml`)."""
    return from_nested(kind, read_toml(path), source=str(path))


def describe_default(leaf: Leaf, defaults: Mapping[str, Any]) -> str | None:
    """How the command-line help states a setting's default."""
    if leaf.meta.default is not None:
        return leaf.meta.default
    value = defaults.get(leaf.name)
    if value is None or value == {} or value == ():
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
"""File formats of every figure pirf writes: PNG (raster) or PDF and SVG (vector)."""
FIGURE_FORMAT_HELP = "File format of the figures: png, or pdf / svg (vector)."
FIGURE_FORMAT_METAVAR = "{png,pdf,svg}"
"""Help and metavar of ``--figure-format``, the same on every command that draws."""


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    """``"20,40,80"`` -> ``(20, 40, 80)``: positive integers, one-line error otherwise."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PirfError(
            f"{option(name)} expects comma-separated integers, got '{text}'"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise PirfError(f"{option(name)} expects positive integers, got '{text}'")
    return values


def iter_sections(config: Any) -> Iterator[tuple[str, Any]]:
    """``(name, section)`` of a configuration's sections."""
    for item in fields(config):
        value = getattr(config, item.name)
        if is_dataclass(value):
            yield item.name, value


__all__ = [
    "FIGURE_FORMATS",
    "FIGURE_FORMAT_HELP",
    "FIGURE_FORMAT_METAVAR",
    "Leaf",
    "Meta",
    "build",
    "checked_value",
    "describe_default",
    "fill",
    "flat",
    "from_nested",
    "get",
    "given",
    "iter_sections",
    "leaves",
    "load_config",
    "parse_ints",
    "read_toml",
    "record",
    "refuse_changes",
    "section",
    "setting",
    "stored_values",
    "to_nested",
    "to_toml",
    "type_name",
    "with_values",
]
