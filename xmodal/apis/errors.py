"""One readable line instead of a traceback when a command fails on bad input.

Commands wrap their ``main`` with :func:`cli_errors`: an error caused by the user's files, config or
arguments (the types in ``USER_ERRORS``, plus xmodal's checkpoint and stage errors) is printed as
``error: <message>`` on stderr and the process exits with status 2. Anything else is a bug and keeps
its traceback. ``XMODAL_DEBUG=1`` shows the traceback for every error. The error types themselves
live in :mod:`xmodal.errors`; config checking in :mod:`xmodal.apis.config`.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

from xmodal.errors import CheckpointError, DiskFullError, RankFailedError, StageError, WorkDirBusyError

F = TypeVar("F", bound=Callable)

# ValueError covers DatasetFormatError and ConfigError; CheckpointError and StageError are RuntimeErrors
# and DiskFullError an OSError, listed by name in user_error_types.
# ModuleNotFoundError: an optional dependency a config needs is not installed (the message says how).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                                 NotADirectoryError, IsADirectoryError, PermissionError,
                                                 ModuleNotFoundError)
EXIT_USER_ERROR = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    return USER_ERRORS + (CheckpointError, StageError, DiskFullError, WorkDirBusyError, RankFailedError)


def format_error(error: BaseException) -> str:
    from xmodal.apis.config import describe_unknown_type  # only for a KeyError: keeps this module light

    message = str(error)
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        message = error.args[0]  # str(KeyError) adds quotes around the message
        # raised outside config_errors: no config key to name, but the close matches
        message = describe_unknown_type(message) or message
    return message or type(error).__name__


def cli_errors(main: F) -> F:
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        if os.environ.get("XMODAL_DEBUG"):
            return main(*args, **kwargs)
        try:
            return main(*args, **kwargs)
        except user_error_types() as error:
            cause = error.__cause__
            if getattr(error, "here", False) and isinstance(cause, Exception) \
                    and not isinstance(cause, user_error_types()):
                traceback.print_exception(cause)  # this rank's own error is a bug: keep its traceback
            print(f"error: {format_error(error)}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapped  # type: ignore[return-value]
