"""``xmodal-verify DATA_ROOT``: check a dataset's files against the SHA-256 its ``meta.json`` records.

Every dataset writer records a checksum per file (``meta.json`` ``sha256``). This command rehashes
each one, whatever the dataset's size (opening a dataset verifies only up to a size threshold, see
``PairedDataset(verify=...)``), and checks that the names in ``meta.json`` stay inside the dataset.
It prints one line per dataset when all match; a changed, missing or escaping file is one
``error: <file>: <field>: <problem>`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xmodal.apis.errors import cli_errors
from xmodal.data.manifest import inside_root, verify_checksums
from xmodal.data.paired import check_meta, read_json
from xmodal.errors import DatasetFormatError


def verify_dataset(data_root: str | Path, allow_outside_root: bool = False) -> list[str]:
    """Check every file ``meta.json`` lists in ``sha256``; returns their names. Raises
    :class:`DatasetFormatError` naming the first file that differs, is missing or leaves the root."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetFormatError(root, "data_root", "directory does not exist")
    path = inside_root(root, root / "meta.json", "file", allow_outside_root)
    meta = read_json(path)
    if "modalities" in meta:  # array datasets: modality names become file names
        check_meta(meta, path, (meta.get("task"),), repr(meta.get("task")))
    return list(verify_checksums(root, meta, path, None, allow_outside_root))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="xmodal-verify", description="Check a dataset's files against the "
                                     "SHA-256 checksums in its meta.json.")
    parser.add_argument("data_root", nargs="+", help="dataset directory (the one holding meta.json)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept files that resolve (through a symlink) outside the dataset directory")
    return parser.parse_args(argv)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for root in args.data_root:
        names = verify_dataset(root, args.allow_outside_root)
        print(f"{root}: {len(names)} files match meta.json")
    return 0


if __name__ == "__main__":
    main()
