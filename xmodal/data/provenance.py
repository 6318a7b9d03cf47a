"""Where a prepared dataset came from: recorded in its ``meta.json`` by every ``data_prep/`` script.

``provenance(index_files, data_files, root)`` gives two ``meta.json`` keys:

* ``xmodal_version``: the version of xmodal that wrote the dataset;
* ``source_files``: ``{name: {"size": bytes, "sha256": hex}}`` for the *index files*, the small files
  that define the dataset (annotation tables, label arrays, metadata lists, split files), and
  ``{name: {"size": bytes}}`` for bulk *data files* named on their own (a multi-GB ``.mat``), whose
  hash would cost a second pass over the data. Names are relative to ``root`` (the source folder)
  when the file lies under it, else the file name.

Rebuilding from the same sources gives the same records, so two datasets can be compared by them,
and a changed annotation file shows up as a changed checksum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from xmodal.version import __version__


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | os.PathLike, checksum: bool = True) -> dict:
    """``{"size", "sha256"}`` of one file (``{"size"}`` alone without ``checksum``)."""
    path = Path(path)
    record: dict = {"size": path.stat().st_size}
    if checksum:
        record["sha256"] = sha256_of(path)
    return record


def _name(path: Path, root: Path | None, taken: dict) -> str:
    name = path.name
    if root is not None:
        try:
            name = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    if name in taken:  # two sources with one file name (a split file beside the annotations' namesake)
        name = path.resolve().as_posix()
    return name


def source_files(index_files: Iterable[str | os.PathLike | None], data_files: Iterable[str | os.PathLike | None] = (),
                 root: str | os.PathLike | None = None) -> dict[str, dict]:
    """The ``source_files`` record; ``None`` entries (an option not given) are skipped."""
    root = Path(root).expanduser() if root is not None else None
    records: dict[str, dict] = {}
    for files, checksum in ((index_files, True), (data_files, False)):
        for path in files:
            if path is None:
                continue
            path = Path(path).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{path}: source file not found")
            records[_name(path, root, records)] = file_record(path, checksum)
    return records


def provenance(index_files: Iterable[str | os.PathLike | None], data_files: Iterable[str | os.PathLike | None] = (),
               root: str | os.PathLike | None = None) -> dict:
    """The ``meta.json`` keys ``xmodal_version`` and ``source_files`` (see the module docstring)."""
    return {"xmodal_version": __version__, "source_files": source_files(index_files, data_files, root)}
