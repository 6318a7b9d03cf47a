"""Samples a converter leaves out because a source file is unreadable (``--skip-bad``).

Without ``--skip-bad`` the first unreadable file (truncated, corrupt, empty) stops the conversion
with its path and what is wrong. With it, the sample is left out and listed in ``meta.json``
``skipped`` (source file, sample, reason); the splits keep every other sample where it was: they
are drawn over all samples, as without skipping, and the skipped ones are then removed and the rest
renumbered. Nothing else changes: the dataset is still staged and renamed into place whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from xmodal.errors import DatasetFormatError

HINT = "--skip-bad leaves such samples out"


def add_skip_bad_argument(parser) -> None:
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out samples whose source files are unreadable (truncated, corrupt, empty) "
                             "instead of stopping; they are listed in meta.json 'skipped'")


class SkippedSources:
    """Either re-raises a source file's error (with the ``--skip-bad`` hint) or records it."""

    def __init__(self, skip: bool, root: str | Path | None = None) -> None:
        self.skip = skip
        self.root = Path(root).resolve() if root is not None else None
        self.entries: list[dict[str, str]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def handle(self, error: DatasetFormatError, sample: object = None) -> None:
        """Raise ``error`` unless skipping; else record its file, ``sample`` and the reason."""
        if not self.skip:
            problem = error.problem if HINT in error.problem else f"{error.problem} ({HINT})"
            raise DatasetFormatError(error.path, error.field, problem) from error
        self.add(error.path, f"{error.field}: {error.problem}", sample)

    def add(self, path: str | Path, reason: str, sample: object = None) -> None:
        """Record a sample left out for ``reason`` (also one a converter skips for another option)."""
        entry = {"file": self._name(str(path)), "reason": reason}
        if sample is not None:
            entry["sample"] = str(sample)
        self.entries.append(entry)

    def _name(self, path: str) -> str:
        if self.root is not None:
            try:
                return Path(path).resolve().relative_to(self.root).as_posix()
            except ValueError:
                pass
        return str(path)

    def meta(self) -> dict:
        """``{"skipped": [...]}`` for meta.json when skipping was asked for (an empty list: none was needed) or
        a sample was left out."""
        return {"skipped": list(self.entries)} if self.skip or self.entries else {}


def drop_from_splits(splits: Mapping[str, Sequence[int]], kept: Sequence[int],
                     path: str | Path) -> dict[str, list[int]]:
    """``splits`` over all samples -> over the ``kept`` ones (old indices, in order), renumbered 0..len(kept)-1.
    A split left empty is refused, naming ``path`` (the source)."""
    new = {int(old): i for i, old in enumerate(kept)}
    out = {name: [new[int(i)] for i in indices if int(i) in new] for name, indices in splits.items()}
    for name, indices in out.items():
        if splits[name] and not indices:
            raise DatasetFormatError(path, "skipped", f"split '{name}': all its {len(splits[name])} sample(s) were "
                                     "skipped as unreadable; expected at least one readable sample per split")
    return out
