"""Where the embedded demo sets are built, once per parameter set, shared by processes."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar, TypeVar

Spec = TypeVar("Spec")


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


def spec_from_config(spec_cls: type[Spec], seed: int, overrides: Mapping[str, object]) -> Spec:
    """An embedded data set's build spec from its dataset config's keywords (config lists become the
    spec's tuples, so equal settings give equal cache keys)."""
    return spec_cls(seed=seed, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})



@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """Everything an embedded data set's build depends on; :meth:`key`, a hash of every field and the
    format version, names the cache directory, so a changed setting never reuses an old build."""

    format_version: ClassVar[str] = "1"
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return f"v{self.format_version}-{hashlib.sha256(blob).hexdigest()[:10]}"
