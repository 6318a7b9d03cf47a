"""Reading and writing the files of a dataset manifest (the ``*.jsonl`` tables and the files they name),
shared by the retrieval and detection formats (docs/data_format.md)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from xmodal.errors import DatasetFormatError


def is_relative(name: object) -> bool:
    """A non-empty relative POSIX path that stays inside its folder (no "..", no absolute path, no backslash)."""
    return (isinstance(name, str) and bool(name) and "\\" not in name and not name.startswith("/")
            and all(part not in ("", ".", "..") for part in name.split("/")))


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
