"""The one exception type users see, and option names in the caller's own words.

Every problem a user can fix (bad arguments, a missing or corrupt file, an unknown PDE)
raises :class:`PirfError` with a one-line message that names the problem and what to do.
The command line prints that line and exits with code 2, without a traceback.

A message that names an argument says it the way the caller wrote it: ``--resume`` on the
command line, ``resume=True`` from Python. :func:`option` renders the name; the command
line switches the rendering with :func:`command_line_words` for the length of a command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_COMMAND_LINE: ContextVar[bool] = ContextVar("pirf_command_line", default=False)
_UNSET = object()


class PirfError(Exception):
    """A user-facing error: the message is one line that says what is wrong and what to do."""


def option(name: str, value: object = _UNSET, *, flag: str | None = None) -> str:
    """The argument ``name`` (a Python keyword) as the caller spells it.

    On the command line: ``--name-with-dashes`` (or ``flag`` where the option is named
    otherwise there). From Python: ``name``, or ``name=value`` when a value is given
    (``option("resume", True)`` -> ``resume=True``).
    """
    if _COMMAND_LINE.get():
        return flag or "--" + name.replace("_", "-")
    return name if value is _UNSET else f"{name}={value!r}"


@contextmanager
def command_line_words() -> Iterator[None]:
    """Within this block :func:`option` renders command-line flags (the CLI wraps every
    command in it)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


@contextmanager
def python_words() -> Iterator[None]:
    """Within this block :func:`option` renders Python names, also under the command line:
    for messages about values that reached an API through another option (a bench's
    ``--method-option pirf.lr=-1`` is the fine-tuning's ``lr``, not ``--lr``)."""
    token = _COMMAND_LINE.set(False)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


__all__ = ["PirfError", "command_line_words", "option", "python_words"]
