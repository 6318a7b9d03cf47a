"""Writing a dataset in xmodal's on-disk format (DESIGN §5): what every ``data_prep/`` script uses.

``write_dataset`` writes arrays, labels, splits and ``meta.json`` (with SHA-256 checksums) into a
temporary directory beside the target and renames it into place at the end, so an interrupted
conversion leaves nothing half-written; an existing dataset is only replaced with ``force=True``.
Splits are the MST-Distill protocol by default: a seeded permutation cut 60/20/20, reproducing the
official index lists (``np.random.seed(19980427)``, permutation number ``group``), or a split file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xmodal.data.errors import DatasetFormatError

OFFICIAL_SPLIT_SEED = 19980427  # MST-Distill's indices_gen.py
SPLIT_NAMES = ("train", "val", "test")


class DatasetExistsError(FileExistsError):
    """The output directory already holds a dataset and ``force`` was not given."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cut_splits(order: Sequence[int], fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> dict[str, list[int]]:
    """First 60 % of ``order`` train, next 20 % val, the rest test (MST-Distill's get_indices)."""
    n = len(order)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    order = [int(i) for i in order]
    return {"train": order[:a], "val": order[a:b], "test": order[b:]}


def official_splits(num_samples: int, group: int = 0) -> dict[str, list[int]]:
    """The official MST-Distill split ``group_<group>``: the (group+1)-th permutation drawn after
    seeding NumPy with 19980427, cut 60/20/20. Matches the official metadata CSVs when the samples
    are in the official order."""
    rng = np.random.RandomState(OFFICIAL_SPLIT_SEED)
    for _ in range(group):
        rng.permutation(num_samples)
    return cut_splits(rng.permutation(num_samples))


def read_split_file(path: str | Path, num_samples: int, group: int = 0) -> dict[str, list[int]]:
    """A user-supplied split: JSON ``{"train": [...], "val": [...], "test": [...]}``, or an official
    metadata CSV (columns ``group_0 … group_19``, each a permutation cut 60/20/20)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "split file", "not found")
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        column = f"group_{group}"
        if not rows or column not in rows[0]:
            raise DatasetFormatError(path, column, f"column missing; the file has {list(rows[0]) if rows else []}")
        splits = cut_splits([int(r[column]) for r in rows])
    else:
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetFormatError(path, "json", f"not valid JSON ({err})") from err
    for name in SPLIT_NAMES:
        values = splits.get(name) if isinstance(splits, dict) else None
        if not isinstance(values, list) or not values:
            raise DatasetFormatError(path, name, "expected a non-empty list of sample indices")
        bad = [i for i in values if not isinstance(i, int) or not 0 <= i < num_samples]
        if bad:
            raise DatasetFormatError(path, name, f"index {bad[0]!r} is not in [0, {num_samples - 1}]")
    return {name: list(splits[name]) for name in SPLIT_NAMES}


class DatasetStream:
    """A dataset written piece by piece: ``array()`` gives a memory-mapped ``<modality>.npy`` in a
    temporary directory beside ``out`` to fill in chunks, ``commit()`` adds labels, splits and
    ``meta.json`` and renames the directory into place. Used as a context manager, a failure
    removes the temporary directory and leaves ``out`` untouched."""

    def __init__(self, out: str | Path, force: bool = False) -> None:
        self.out = Path(out).expanduser()
        if self.out.exists() and any(self.out.iterdir()) and not force:
            raise DatasetExistsError(f"{self.out} already exists and is not empty; pass --force to replace it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}-", dir=self.out.parent))
        self.arrays: dict[str, np.ndarray] = {}

    def __enter__(self) -> DatasetStream:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def array(self, modality: str, shape: Sequence[int], dtype: str | np.dtype = "float32") -> np.ndarray:
        self.arrays[modality] = np.lib.format.open_memmap(self.tmp / f"{modality}.npy", mode="w+", dtype=dtype,
                                                          shape=tuple(shape))
        return self.arrays[modality]

    def labels(self, shape: Sequence[int], dtype: str | np.dtype = "int64") -> np.ndarray:
        """A memory-mapped ``labels.npy`` to fill in chunks (per-pixel labels); then ``commit(None, ...)``."""
        self._labels = np.lib.format.open_memmap(self.tmp / "labels.npy", mode="w+", dtype=dtype, shape=tuple(shape))
        return self._labels

    def commit(self, labels: np.ndarray | None, classes: Sequence[str], name: str, source: str,
               splits: Mapping[str, Sequence[int]], task: str = "classification", extra_meta: Mapping | None = None,
               extra_files: Mapping[str, str | bytes] | None = None) -> Path:
        """Write labels (or keep those filled through ``labels()``), splits and meta.json, then rename."""
        written = getattr(self, "_labels", None)
        if labels is None and written is None:
            raise ValueError(f"{name}: no labels given and none written through DatasetStream.labels()")
        count = len(written) if labels is None else len(labels)
        for modality, array in self.arrays.items():
            if len(array) != count:
                raise ValueError(f"{name}: modality '{modality}' has {len(array)} samples, labels {count}")
            array.flush()
        files = [f"{m}.npy" for m in self.arrays]
        if labels is None:
            written.flush()
            self._labels = None
        else:
            np.save(self.tmp / "labels.npy", np.asarray(labels).astype(np.int64))
        (self.tmp / "splits.json").write_text(json.dumps({k: [int(i) for i in v] for k, v in splits.items()}))
        files += ["labels.npy", "splits.json"]
        for filename, content in (extra_files or {}).items():
            (self.tmp / filename).write_bytes(content.encode() if isinstance(content, str) else content)
            files.append(filename)
        meta = {
            "name": name,
            "version": "1",
            "task": task,
            "classes": list(classes),
            "modalities": {m: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for m, a in self.arrays.items()},
            "source": source,
            **(extra_meta or {}),
            "sha256": {f: sha256_of(self.tmp / f) for f in files},
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        self.arrays.clear()  # release the memory maps before the rename
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return self.out


def write_dataset(out: str | Path, arrays: Mapping[str, np.ndarray], labels: np.ndarray, classes: Sequence[str],
                  name: str, source: str, splits: Mapping[str, Sequence[int]], task: str = "classification",
                  extra_meta: Mapping | None = None, extra_files: Mapping[str, str | bytes] | None = None,
                  force: bool = False) -> Path:
    """Write ``<modality>.npy`` for each (in-memory) array, ``labels.npy``, ``splits.json``, ``meta.json``."""
    with DatasetStream(out, force=force) as stream:
        for modality, array in arrays.items():
            stream.array(modality, array.shape, array.dtype)[:] = array
        return stream.commit(labels, classes, name, source, splits, task, extra_meta, extra_files)


def add_common_arguments(parser) -> None:
    """The options every data_prep script shares."""
    parser.add_argument("--out", required=True, help="output dataset directory (xmodal on-disk format)")
    parser.add_argument("--split-group", type=int, default=0,
                        help="official split number 0-19 (MST-Distill's group_<n>; default 0)")
    parser.add_argument("--split-file", help="use this split instead: JSON {train,val,test} or an official "
                        "<dataset>_indices.csv")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset at --out")


def splits_from_args(args, num_samples: int) -> dict[str, list[int]]:
    if args.split_file:
        return read_split_file(args.split_file, num_samples, args.split_group)
    return official_splits(num_samples, args.split_group)
