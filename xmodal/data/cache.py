"""Where the embedded demo sets are built, once per parameter set, shared by processes."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def default_data_home() -> Path:
    return Path(os.environ.get("XMODAL_DATA", Path.home() / ".cache" / "xmodal")).expanduser()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # several processes (DDP ranks, tests) may ask at once
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_build(name: str, key: str, write: Callable[[Path], object], root: str | Path | None = None,
                 force: bool = False) -> Path:
    """``<root or $XMODAL_DATA/name>/<key>``, written by ``write(target)`` unless a complete build (its
    ``meta.json``) is already there. ``write`` must be atomic (temporary directory, then rename)."""
    base = Path(root).expanduser() if root is not None else default_data_home() / name
    target = base / key
    with locked(base / f".{key}.lock"):
        if force or not (target / "meta.json").is_file():
            write(target)
    return target
