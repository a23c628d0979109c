"""The command line as a whole: it starts without the numerical stack, ``--version``,
help without types beside flags, and commands loaded on demand."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pirf
from pirf.cli import COMMANDS, _docstring, _import, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "h5py", "matplotlib")


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter on this tree; returns its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_cli_loads_no_numerical_package():
    loaded = _fresh_python(
        f"import sys, pirf.cli\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert loaded.strip() == ""


@pytest.mark.parametrize(
    "package",
    ["pirf", "pirf.data", "pirf.pdes", "pirf.models", "pirf.sampling", "pirf.training",
     "pirf.finetune", "pirf.evaluation", "pirf.bench", "pirf.checks", "pirf.diagnostics",
     "pirf.solve"],
)  # fmt: skip
def test_importing_a_package_loads_no_numerical_package(package):
    loaded = _fresh_python(
        f"import sys, {package}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert loaded.strip() == ""


@pytest.mark.parametrize(
    "command",
    ["train", "finetune", "bench", "demo", "sample", "evaluate", "export", "solve",
     "diagnose value-gap", "data generate"],
)  # fmt: skip
def test_a_commands_help_loads_no_numerical_package(command):
    output = _fresh_python(
        "import sys\n"
        "from pirf.cli import main\n"
        f"code = main([*{command.split()!r}, '--help'])\n"
        f"print(code, ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert output.splitlines()[-1].strip() == "0"


def test_root_help_lists_every_command_without_loading_them():
    output = _fresh_python(
        "import sys\n"
        "from pirf.cli import main\n"
        "code = main(['--help'])\n"
        f"print(code, ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert output.splitlines()[-1].strip() == "0"
    for name in ("data", "diagnose", *COMMANDS):
        assert f" {name} " in output


def test_help_shows_each_commands_own_summary():
    for name, target in COMMANDS.items():
        docstring = _docstring(target)
        assert docstring, name
        assert docstring == inspect.getdoc(_import(target))


def test_version_prints_the_version(capsys):
    assert main(["--version"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == pirf.__version__ and captured.err == ""


def test_flags_show_no_type_in_help(capsys):
    assert main(["sample", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    flag_lines = [line for line in lines if any(f"--{f} " in line for f in ("json", "force"))]
    assert len(flag_lines) == 2
    assert not any("<bool>" in line for line in lines)
    steps = next(line for line in lines if "--steps " in line)
    assert "<int>" in steps  # options with a value still show it


def test_every_command_shows_its_help(capsys):
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert "--help" in capsys.readouterr().out


def test_usage_errors_are_one_line_that_says_where_to_look(capsys):
    assert main(["trian"]) == 2
    assert capsys.readouterr().err == "error: No such command 'trian'; see 'pirf --help'\n"
    assert main(["data", "generate", "poisson", "--n", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid value for '--n'") and err.count("\n") == 1
    assert err.rstrip().endswith("see 'pirf data generate --help'")
