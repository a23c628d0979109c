"""The ``pirf`` command line: thin wrappers over the Python API.

Every command has ``--help``, prints a short readable summary (``--json`` for scripts), and
turns a :class:`~pirf.errors.PirfError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from pirf.cli import bench as bench_commands
from pirf.cli import data as data_commands
from pirf.cli import demo as demo_commands
from pirf.cli import diagnose as diagnose_commands
from pirf.cli import evaluate as evaluate_commands
from pirf.cli import finetune as finetune_commands
from pirf.cli import pdes as pdes_commands
from pirf.cli import sample as sample_commands
from pirf.cli import solve as solve_commands
from pirf.cli import train as train_commands
from pirf.cli._common import console_err
from pirf.errors import PirfError, command_line_words

app = typer.Typer(
    name="pirf",
    help="Physics-informed reward fine-tuning of diffusion models for PDE data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_commands.app, name="data")
app.command("pdes")(pdes_commands.list_pdes)
app.command("demo")(demo_commands.demo)
app.command("train")(train_commands.train)
app.command("finetune")(finetune_commands.finetune)
app.command("sample")(sample_commands.sample)
app.command("evaluate")(evaluate_commands.evaluate)
app.command("bench")(bench_commands.bench)
app.add_typer(diagnose_commands.app, name="diagnose")
app.command("solve")(solve_commands.solve)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the pirf version and exit."),
) -> None:
    """Physics-informed reward fine-tuning of diffusion models for PDE data."""
    if version:
        from pirf import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, mapping user errors to exit code 2."""
    try:
        with command_line_words():
            app(args=argv, standalone_mode=False)
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
    except Exception as error:  # click usage errors and the like
        try:
            from click import ClickException
        except ImportError:  # typer >= 0.20 vendors click; its exceptions derive from this
            from typer.exceptions import TyperException as ClickException

        if isinstance(error, ClickException):
            error.show()
            return error.exit_code
        raise
    return 0


def run() -> None:
    sys.exit(main())
