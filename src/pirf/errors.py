"""The one exception type users see.

Every problem a user can fix (bad arguments, a missing or corrupt file, an unknown PDE)
raises :class:`PirfError` with a one-line message that names the problem and what to do.
The command line prints that line and exits with code 2, without a traceback.
"""


class PirfError(Exception):
    """A user-facing error: the message is one line that says what is wrong and what to do."""
