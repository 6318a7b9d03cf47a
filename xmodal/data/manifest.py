"""Reading and writing the files of a dataset manifest (the ``*.jsonl`` tables and the files they name),
shared by the retrieval and detection formats (docs/data_format.md)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from xmodal.data.provenance import sha256_of
from xmodal.errors import DatasetFormatError


def is_relative(name: object) -> bool:
    """A non-empty relative POSIX path that stays inside its folder (no "..", no absolute path, no backslash)."""
    return (isinstance(name, str) and bool(name) and "\\" not in name and not name.startswith("/")
            and all(part not in ("", ".", "..") for part in name.split("/")))


def is_plain_name(name: object) -> bool:
    """A file name without a folder: non-empty, no "/" or "\\", not "." or "..", no NUL."""
    return (isinstance(name, str) and bool(name) and name not in (".", "..")
            and not any(ch in name for ch in "/\\\0"))


def inside_root(root: Path, path: Path, field: str, allow_outside_root: bool = False) -> Path:
    """``path`` (a file of the dataset at ``root``) if it resolves, symlinks followed, to a place under
    ``root``; otherwise a :class:`DatasetFormatError` naming it. ``allow_outside_root`` lets it through
    (a dataset that links to shared storage on purpose)."""
    if allow_outside_root:
        return path
    base, real = root.resolve(), path.resolve()
    if real != base and base not in real.parents:
        raise DatasetFormatError(path, field, f"resolves to {real}, outside the dataset root {base} (a symlink "
                                 "or '..'?); expected a file inside the dataset; pass allow_outside_root=True "
                                 "if the link is intended")
    return path


def file_identity(paths: Iterable[Path], checksums: Mapping[str, str] | None = None) -> str:
    """What a fingerprint needs to see a file change: each file's SHA-256 where one was verified
    (``checksums``, by name), else its size and modification time."""
    checksums = checksums or {}
    parts = []
    for path in paths:
        if path.name in checksums:
            parts.append((path.name, checksums[path.name]))
        else:
            stat = path.stat()
            parts.append((path.name, stat.st_size, stat.st_mtime_ns))
    return repr(parts)


VERIFY_AUTO_BYTES = 512 * 1024 * 1024  # verify="auto" hashes datasets up to this size when they are opened
_HASHED: dict[tuple, str] = {}  # (real path, size, mtime_ns) -> sha256: the train, val and test splits hash once


def _sha256_once(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_of(path)
    return _HASHED[key]


def want_verify(verify: bool | str, sizes: Iterable[int], owner: str) -> bool:
    """``verify``: True, False, or "auto" (verify when the files total at most ``VERIFY_AUTO_BYTES``)."""
    if verify == "auto":
        return sum(sizes) <= VERIFY_AUTO_BYTES
    if not isinstance(verify, bool):
        raise ValueError(f"{owner}.verify: got {verify!r}; expected True, False or 'auto'")
    return verify


def verify_checksums(root: Path, meta: Mapping, meta_path: Path, names: Iterable[str] | None = None,
                     allow_outside_root: bool = False) -> dict[str, str]:
    """Check the files ``meta.json`` records in ``sha256`` (all, or only ``names``) against their
    content; returns ``{name: sha256}``. A changed file is a :class:`DatasetFormatError` naming it."""
    recorded = meta.get("sha256")
    if not isinstance(recorded, dict):
        raise DatasetFormatError(meta_path, "sha256", "missing; expected {file: hex digest}, which the dataset "
                                 "writers record (re-run the converter to get it, or verify=False)")
    wanted = list(recorded) if names is None else [n for n in names if n in recorded]
    verified = {}
    for name in wanted:
        if not is_relative(name) or not isinstance(recorded[name], str):
            raise DatasetFormatError(meta_path, f"sha256.{name}", "expected a file path relative to the dataset "
                                     "root (no '..') with a hex digest")
        path = inside_root(root, root / name, "file", allow_outside_root)
        if not path.is_file():
            raise DatasetFormatError(path, "file", "missing (listed in meta.json sha256)")
        actual = _sha256_once(path)
        if actual != recorded[name]:
            raise DatasetFormatError(path, "sha256", f"content does not match meta.json (recorded "
                                     f"{recorded[name][:12]}..., file {actual[:12]}...): the file changed after "
                                     "the dataset was written; restore it or re-run the converter")
        verified[name] = actual
    return verified


def place(source: Path, target: Path, link: bool) -> None:
    """Hard-link when allowed (same filesystem, permitted by the kernel), otherwise copy."""
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # EXDEV across filesystems, EPERM under protected_hardlinks, ...
            pass
    shutil.copyfile(source, target)


def parse_lines(path: Path) -> list:
    """One JSON value per line of ``path``; a bad line is named by its number."""
    if not path.is_file():
        raise DatasetFormatError(path, "file", "missing; expected a dataset table (see docs/data_format.md)")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise DatasetFormatError(path, "encoding", f"not UTF-8 text ({err})") from err
    if lines[-1] == "":
        lines.pop()
    # Fast path: the lines as one JSON array (COCO's 600k captions in well under a second). When every
    # line holds one value this is exactly the per-line parse; otherwise the loop below finds the line.
    if all(line.strip() for line in lines):
        try:
            rows = json.loads("[" + ",".join(lines) + "]")
            if len(rows) == len(lines):
                return rows
        except json.JSONDecodeError:
            pass
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetFormatError(path, f"line {number}", "empty line; expected one JSON object per line")
        try:
            json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(path, f"line {number}", f"not valid JSON ({err})") from err
    raise DatasetFormatError(path, "lines", "expected one JSON object per line")  # not reached
