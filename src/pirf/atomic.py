"""Write a file all-or-nothing: a temporary file beside the destination, renamed at the end.

A run that fails, is interrupted (Ctrl-C) or terminated (SIGTERM) removes its temporary
file and leaves the destination as it was; only a completed file ever carries the
destination's name (``os.replace`` is atomic within a directory). A hard kill (SIGKILL)
cannot be caught: it may leave a ``NAME.tmp-XXXXXXXX`` file, which no reader mistakes for
a dataset.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from pirf.checks import writable_error
from pirf.errors import PirfError, option


def check_destination(
    path: str | Path, *, force: bool = False, name: str | None = None, flag: str | None = None
) -> Path:
    """Raise :class:`PirfError` unless ``path`` can be written: its directory exists and is
    writable, and it is not an existing file (unless ``force``) or a directory. ``name``:
    the argument that gave ``path``, named at the start of the message (``flag``: its name on
    the command line where that differs from ``--name``)."""
    path = Path(path)
    parent = path.parent
    problem = None
    if not parent.exists():
        problem = f"directory {parent} does not exist; create it first"
    elif not parent.is_dir():
        problem = f"{parent} is not a directory"
    elif (reason := writable_error(parent)) is not None:
        problem = f"directory {parent} is not writable: {reason}"
    elif path.is_dir():
        problem = f"{path} is a directory; give a file name such as {path / 'data.h5'}"
    elif path.exists() and not force:
        problem = f"{path} already exists; pass {option('force', True)} to overwrite it"
    if problem is not None:
        raise PirfError(problem if name is None else f"{option(name, flag=flag)}: {problem}")
    return path


def temporary_name(path: Path) -> Path:
    """A fresh name beside ``path`` that no reader takes for a finished file."""
    return path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_output(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to ``path``, otherwise delete it.

    The destination is validated first (:func:`check_destination`). While the block runs,
    SIGTERM (in the main thread) raises ``SystemExit(143)`` so that cleanup happens.
    """
    destination = check_destination(path, force=force)
    temporary = temporary_name(destination)
    try:
        with _terminate_as_exit():
            yield temporary
        if not temporary.exists():
            raise PirfError(f"nothing was written to {destination}")
        fsync_path(temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Flush a finished file to disk before it takes its final name."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` for the duration (main thread only), so
    ``finally`` blocks run; the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
