"""One readable line instead of a traceback when a command fails on bad input.

Commands wrap their ``main`` with :func:`cli_errors`: an error caused by the user's files, config or
arguments (the types in ``USER_ERRORS``) is printed as ``error: <message>`` on stderr and the process
exits with status 2. Anything else is a bug and keeps its traceback. ``XMODAL_DEBUG=1`` shows the
traceback for every error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

# ValueError covers DatasetFormatError, CheckpointError is a RuntimeError subclass listed by name.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                                 NotADirectoryError, IsADirectoryError, PermissionError)
EXIT_USER_ERROR = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    from xmodal.engine.checkpoint import CheckpointError

    return USER_ERRORS + (CheckpointError,)


def format_error(error: BaseException) -> str:
    message = str(error)
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        message = error.args[0]  # str(KeyError) adds quotes around the message
    return message or type(error).__name__


def cli_errors(main: F) -> F:
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        if os.environ.get("XMODAL_DEBUG"):
            return main(*args, **kwargs)
        try:
            return main(*args, **kwargs)
        except user_error_types() as error:
            print(f"error: {format_error(error)}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapped  # type: ignore[return-value]
