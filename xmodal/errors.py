"""The error types a user can cause: a bad config, a stage run out of order, an unusable checkpoint,
a dataset on disk in the wrong format.

A leaf module (it imports nothing from xmodal), so every layer can raise these and the commands can
catch them (``xmodal.apis.errors.cli_errors``) without importing the code that raises them.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot be used: the message names the config file, the key and what was expected."""


class StageError(RuntimeError):
    """A stage cannot run: its input stage has not finished, or the stage number is wrong."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, untrusted or not matching the model."""


class DiskFullError(OSError):
    """A write ran out of space (ENOSPC, or a quota): names the file and the free space. The write was
    to a temporary file, so the file it was replacing is unchanged."""


class WorkDirBusyError(RuntimeError):
    """Another live run holds the work dir (its lock names the PID)."""


class RankFailedError(RuntimeError):
    """A distributed run stopped because one rank failed; every rank raises it with the same message,
    which starts with the failed rank (``rank 1 of 2: ...``)."""


class TeacherCacheError(ValueError):
    """A teacher-cache entry that cannot be used (its files changed after it was written): names the file."""


class DatasetFormatError(ValueError):
    """Names the file and the field at fault and what was expected."""

    def __init__(self, path: object, field: str, problem: str) -> None:
        self.path, self.field, self.problem = str(path), field, problem
        super().__init__(f"{self.path}: {field}: {problem}")


__all__ = ["CheckpointError", "ConfigError", "DatasetFormatError", "DiskFullError", "RankFailedError", "StageError",
           "TeacherCacheError"]
