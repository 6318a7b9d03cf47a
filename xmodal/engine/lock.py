"""One work dir, one run: ``<work_dir>/.xmodal.lock`` holds the live run's PID and host.

A second run into a held work dir fails with the holder's PID; a lock whose process is gone (killed,
crashed) is taken over. Only processes on the same host can be checked: a lock from another host is
treated as live, and the message says how to remove it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from xmodal.errors import ConfigError, WorkDirBusyError

LOCK_NAME = ".xmodal.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _stale(holder: dict) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True  # unreadable: a write cut short, no live holder
    if holder.get("host") != socket.gethostname():
        return False  # cannot be checked from here
    return not _alive(pid)


def _create(path: Path, record: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return True


def acquire(work_dir: str | Path) -> Path:
    """Take the work dir's lock for this process; returns the lock file. Raises
    :class:`~xmodal.errors.WorkDirBusyError` naming the PID of a live run that holds it."""
    work_dir = Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise ConfigError(f"work_dir: {work_dir} is a file; expected a directory (or a path that does not exist)")
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):  # a stale lock removed by two runs at once: one of them creates the new one
        if _create(path, record):
            return path
        holder = _read(path)
        if not _stale(holder):
            where = "" if holder.get("host") == socket.gethostname() else f" on host {holder.get('host')}"
            raise WorkDirBusyError(f"work_dir {work_dir}: another run (PID {holder.get('pid')}{where}, started "
                                   f"{holder.get('started', '?')}) is training into it; wait for it to finish, "
                                   f"stop it, or give this run its own --work-dir (if that run is gone, delete "
                                   f"{path})")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # its process is gone: take over
    raise WorkDirBusyError(f"work_dir {work_dir}: could not take {path}; another run keeps recreating it")


def release(path: Path) -> None:
    """Remove the lock if this process still holds it."""
    if _read(path).get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def work_dir_lock(work_dir: str | Path) -> Iterator[Path]:
    """Hold the work dir's lock for the ``with`` block; a work dir it created and nothing else used is
    removed again, so a run that fails before starting leaves nothing behind."""
    created = not Path(work_dir).exists()
    path = acquire(work_dir)
    try:
        yield path
    finally:
        release(path)
        if created:
            with contextlib.suppress(OSError):
                Path(work_dir).rmdir()  # only when empty
