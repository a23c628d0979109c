"""Command-line options generated from a configuration class (:mod:`pirf.settings`).

Every setting of a configuration becomes one option: its flag, help text and metavar come
from the setting's declaration, its default from the run kind's defaults (shown in the
help, never passed: a setting the user leaves out stays ``None`` and is resolved by the
same function the Python API uses). ``--config FILE.toml`` starts from a run's
``config.toml``; options given on the command line override the file.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pirf.settings import Leaf, describe_default, leaves, load_config, with_values

CONFIG_PARAMETER = "config_file"


def _base_type(annotation: Any) -> Any:
    args = [t for t in typing.get_args(annotation) if t is not type(None)]
    return args[0] if args else annotation


def _parameter(
    leaf: Leaf, defaults: Mapping[str, Any], notes: Mapping[str, str], panels: bool
) -> inspect.Parameter:
    kind = _base_type(leaf.annotation)
    help_text = escape(leaf.meta.help)
    stated = [describe_default(leaf, defaults), notes.get(leaf.name)]
    if any(stated):
        help_text += escape(f" [default: {'; '.join(part for part in stated if part)}]")
    panel = leaf.path[0].capitalize() if panels and len(leaf.path) > 1 else None
    common = {"help": help_text, "show_default": False, "rich_help_panel": panel}
    if kind is bool:
        flag = leaf.flag
        names = [flag] if leaf.name == "resume" else [f"{flag}/--no-{flag[2:]}"]
        option = typer.Option(*names, metavar="", **common)
        annotation: Any = bool | None
    else:
        metavar = leaf.meta.metavar or {int: "INT", float: "FLOAT", Path: "PATH"}.get(kind, "TEXT")
        option = typer.Option(leaf.flag, metavar=metavar, **common)
        if typing.get_origin(kind) is dict:  # repeated KEY=VALUE options
            annotation = list[str] | None
        else:
            annotation = (str if leaf.meta.parse or typing.get_origin(kind) else kind) | None
    return inspect.Parameter(
        leaf.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation, option],
    )


def config_parameter() -> inspect.Parameter:
    """``--config FILE.toml``: start from a run's configuration file."""
    option = typer.Option(
        "--config",
        help="Start from this configuration (a run's config.toml); options given here override it.",
        show_default=False,
        metavar="FILE.toml",
    )
    return inspect.Parameter(
        CONFIG_PARAMETER,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[Path | None, option],
    )


def settings_parameters(
    kind: type,
    defaults: Mapping[str, Any],
    *,
    exclude: tuple[str, ...] = (),
    notes: Mapping[str, str] | None = None,
    panels: bool = True,
) -> list[inspect.Parameter]:
    """One keyword parameter per command-line setting of ``kind`` (in the help, grouped by
    section unless ``panels`` is off; ``notes`` adds to a setting's stated default)."""
    return [
        _parameter(leaf, defaults, notes or {}, panels)
        for leaf in leaves(kind)
        if leaf.meta.cli and leaf.name not in exclude
    ]


def parse_values(kind: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The options a user gave (not ``None``), parsed by each setting's ``parse``."""
    by_name = {leaf.name: leaf for leaf in leaves(kind)}
    parsed = {}
    for name, value in values.items():
        if value is None or name not in by_name:
            continue
        parse = by_name[name].meta.parse
        words = isinstance(value, list) and all(isinstance(item, str) for item in value)
        text = isinstance(value, str) or words
        parsed[name] = parse(value) if parse is not None and text else value
    return parsed


def configure(kind: type, values: Mapping[str, Any], config_file: Path | None) -> Any:
    """The configuration the command line asks for: ``--config`` (if any), then the
    options given."""
    base = load_config(kind, config_file) if config_file is not None else kind()
    return with_values(base, parse_values(kind, values))


def command(
    kind: type,
    defaults: Mapping[str, Any],
    run: Callable[..., None],
    *,
    extra: list[inspect.Parameter],
    doc: str,
    exclude: tuple[str, ...] = (),
    notes: Mapping[str, str] | None = None,
) -> Callable[..., None]:
    """A typer command: ``extra`` parameters (e.g. ``--json``), then one option per setting
    of ``kind``, then ``--config``. Calls ``run(config, **extras)`` with the configuration
    built by :func:`configure`."""
    parameters = [
        *extra,
        *settings_parameters(kind, defaults, exclude=exclude, notes=notes),
        config_parameter(),
    ]
    names = {p.name for p in extra}

    def invoke(**kwargs: Any) -> None:
        extras = {name: kwargs.pop(name) for name in names}
        config_file = kwargs.pop(CONFIG_PARAMETER, None)
        run(configure(kind, kwargs, config_file), **extras)

    invoke.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    invoke.__annotations__ = {p.name: p.annotation for p in parameters}
    invoke.__doc__ = doc
    return invoke


__all__ = ["command", "config_parameter", "configure", "parse_values", "settings_parameters"]
