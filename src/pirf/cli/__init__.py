"""The ``pirf`` command line: thin wrappers over the Python API.

Every command has ``--help``, prints a short readable summary (``--json`` for scripts), and
turns a :class:`~pirf.errors.PirfError` into one line on stderr and exit code 2.

Importing this package is cheap: each command's module is imported only when that command
runs or shows its own help (the list of commands is read from the modules' source), and the
command modules import torch, h5py and matplotlib inside their bodies. ``pirf --help``
therefore answers without loading the numerical stack.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
from typing import Annotated, Any

import typer
import typer.core
from rich.markup import escape

from pirf.cli._common import console_err
from pirf.errors import PirfError, command_line_words


def _usage_error_classes() -> tuple[type[Exception], ...]:
    """The exception classes of usage errors: typer < 0.20 raises click's; later versions
    vendor click under ``TyperException``, and an installed click package is then another
    class altogether, so both are caught."""
    classes: list[type[Exception]] = []
    try:
        from typer.exceptions import TyperException

        classes.append(TyperException)
    except ImportError:
        pass
    try:
        from click import ClickException

        classes.append(ClickException)
    except ImportError:
        pass
    return tuple(classes)


USAGE_ERRORS = _usage_error_classes()

COMMANDS: dict[str, str] = {
    "pdes": "pirf.cli.pdes:list_pdes",
    "demo": "pirf.cli.demo:demo",
    "train": "pirf.cli.train:train",
    "finetune": "pirf.cli.finetune:finetune",
    "sample": "pirf.cli.sample:sample",
    "evaluate": "pirf.cli.evaluate:evaluate",
    "export": "pirf.cli.export:export",
    "bench": "pirf.cli.bench:bench",
    "solve": "pirf.cli.solve:solve",
}
"""Command name -> ``module:function``, in the order ``pirf --help`` lists them."""


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _docstring(target: str) -> str | None:
    """The docstring of ``module:function``, read from the module's source without
    importing it (importing it may load torch); None if the source cannot be read."""
    module, _, name = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            return None
        with open(spec.origin, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (ImportError, OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_docstring(node)
        # A command generated from a configuration: ``name = command(..., doc="...")``.
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Call)
        ):
            for keyword in node.value.keywords:
                if keyword.arg == "doc" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return None


class LazyGroup(typer.core.TyperGroup):
    """The root group: the commands of :data:`COMMANDS` are imported and built the first
    time one runs or shows its help. Listing them (``pirf --help``) takes each one's help
    from its module's source."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        help_text = _docstring(COMMANDS[cmd_name])
        if help_text is None:
            return self._load(cmd_name)
        # A stand-in for the listing; running the command goes through resolve_command.
        return typer.core.TyperCommand(cmd_name, help=help_text)

    def resolve_command(
        self, ctx: typer.Context, args: list[str]
    ) -> tuple[str | None, typer.core.TyperCommand | None, list[str]]:
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self._load(args[0])
        return super().resolve_command(ctx, args)

    def _load(self, name: str) -> Any:
        function = _import(COMMANDS[name])
        command = typer.main.get_command_from_info(
            typer.models.CommandInfo(name=name, callback=function),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )
        self.add_command(command, name)
        return command


def _hide_flag_types() -> None:
    """Show no type for flags in help (typer 0.29 prints ``<bool>`` beside ``--json``).

    Wraps ``TyperOption.display_type_rich`` so that it returns None for flags; if typer
    stops having that method, help keeps its default look.
    """
    option_class = typer.core.TyperOption
    original = getattr(option_class, "display_type_rich", None)
    if original is None or getattr(original, "_pirf_hides_flags", False):
        return

    @functools.wraps(original)
    def display_type_rich(self: typer.core.TyperOption, ctx: typer.Context) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich._pirf_hides_flags = True  # type: ignore[attr-defined]
    option_class.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


def _print_version(value: bool) -> None:
    """``--version``: print the version and stop, before any command is looked for."""
    if value:
        from pirf import __version__

        typer.echo(__version__)
        raise typer.Exit()


app = typer.Typer(
    name="pirf",
    help="Physics-informed reward fine-tuning of diffusion models for PDE data.",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _add_groups() -> None:
    """The command groups (their modules import nothing heavy at the top)."""
    from pirf.cli import data, diagnose

    app.add_typer(data.app, name="data")
    app.add_typer(diagnose.app, name="diagnose")


_add_groups()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the pirf version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin",
            help="Import this module first (your own PDEs); repeat. Also: "
            "PIRF_PLUGINS=module[,module].",
            metavar="MODULE",
        ),
    ] = None,
) -> None:
    """Physics-informed reward fine-tuning of diffusion models for PDE data."""
    from pirf.plugins import load_environment_plugins, load_plugins

    load_environment_plugins()
    load_plugins(plugin or [], source="--plugin")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, mapping user errors to exit code 2."""
    try:
        with command_line_words():
            app(args=argv, prog_name="pirf", standalone_mode=False)
    except PirfError as error:
        console_err.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
        return 2
    except KeyboardInterrupt:
        console_err.print("[bold red]interrupted[/]")
        return 130
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        console_err.print("[bold red]aborted[/]")
        return 1
    except USAGE_ERRORS as error:  # usage errors: one line too, with where to look
        text = error.format_message() if hasattr(error, "format_message") else str(error)
        message = " ".join(text.split())
        context = getattr(error, "ctx", None)
        if context is not None:
            message = f"{message.rstrip('.')}; see '{context.command_path} --help'"
        console_err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return int(getattr(error, "exit_code", 2))
    return 0


def run() -> None:
    sys.exit(main())
