"""Writing a dataset in xmodal's on-disk format (docs/data_format.md): what every ``data_prep/`` script uses.

``write_dataset`` writes arrays, labels, splits and ``meta.json`` (with SHA-256 checksums) into a
temporary directory beside the target and renames it into place at the end, so an interrupted
conversion leaves nothing half-written; an existing dataset is only replaced with ``force=True``,
and only once the new one is complete (it is moved aside, the new one renamed in, then removed).

Temporary directories are named ``.<name>-<host>-<pid>-<random>`` beside the output. A process
killed mid-way cannot remove its own: the next run for the same output removes those whose process
is gone, and if the kill fell between the two renames of a replacement, puts the old dataset back.

Splits are the MST-Distill protocol by default: a seeded permutation cut 60/20/20, reproducing the
official index lists (``np.random.seed(19980427)``, permutation number ``group``), or a split file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xmodal.data.provenance import sha256_of
from xmodal.data.splits import split_problems
from xmodal.errors import DatasetFormatError
from xmodal.version import __version__

OFFICIAL_SPLIT_SEED = 19980427  # MST-Distill's indices_gen.py
OFFICIAL_SPLIT_GROUPS = 20  # group_0 ... group_19
SPLIT_NAMES = ("train", "val", "test")


class DatasetExistsError(FileExistsError):
    """The output directory already holds a dataset and ``force`` was not given."""


_log = logging.getLogger(__name__)
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]  # stale-dir cleanup stays on its host
_ASIDE = "replaced-old"  # the old dataset while its replacement is renamed in (mkdtemp never writes "-")


def _temp_prefix(out: Path) -> str:
    return f".{out.name}-{_HOST_TAG}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(out: str | Path) -> None:
    """Remove the temporary directories beside ``out`` left by killed runs on this host; if a run was
    killed while replacing ``out`` (old dataset moved aside, new one not yet renamed in), restore the
    old dataset."""
    out = Path(out).expanduser()
    if not out.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(out.name)}-{_HOST_TAG}-(\d+)-(.+)$")
    stale = []
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _process_alive(int(match.group(1))):
            stale.append((match.group(2) == _ASIDE, entry))
    for aside, entry in sorted(stale, key=lambda item: not item[0]):  # restore before removing the rest
        if aside and not out.exists():
            os.replace(entry, out)
            _log.warning("%s: restored the previous dataset (a replacement was interrupted)", out)
        else:
            _remove(entry)
            _log.info("removed %s, left by an interrupted run", entry)


def refuse_existing(out: str | Path, force: bool = False) -> Path:
    """Raise :class:`DatasetExistsError` if ``out`` holds anything and ``force`` is not set; scripts call
    this before any slow work (the writer checks again). Cleans up after killed runs first."""
    out = Path(out).expanduser()
    clean_stale(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise DatasetExistsError(f"{out} already exists and is not empty; pass --force to replace it")
    return out


def publish(tmp: Path, out: Path) -> Path:
    """Rename the complete dataset ``tmp`` to ``out``. An existing ``out`` is moved aside first and removed
    only after the rename; if the rename fails, it is put back."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private (0700); a dataset gets the usual permissions
    if not (out.exists() or out.is_symlink()):
        os.replace(tmp, out)
        return out
    aside = out.parent / f"{_temp_prefix(out)}{_ASIDE}"
    _remove(aside)
    os.replace(out, aside)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(aside, out)
        raise
    _remove(aside)
    return out


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
    if not 0 <= group < OFFICIAL_SPLIT_GROUPS:  # another number would give a split no official file has
        raise ValueError(f"--split-group {group}: expected an official split number 0-{OFFICIAL_SPLIT_GROUPS - 1}")
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
    for name, problem in split_problems({name: splits[name] for name in SPLIT_NAMES}, num_samples):
        raise DatasetFormatError(path, name, problem)  # a sample twice, or in two splits
    return {name: list(splits[name]) for name in SPLIT_NAMES}


class DatasetStream:
    """A dataset written piece by piece: ``array()`` gives a memory-mapped ``<modality>.npy`` in a
    temporary directory beside ``out`` to fill in chunks, ``commit()`` adds labels, splits and
    ``meta.json`` and renames the directory into place. Used as a context manager, a failure
    removes the temporary directory and leaves ``out`` untouched."""

    def __init__(self, out: str | Path, force: bool = False) -> None:
        self.out = refuse_existing(out, force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.out), dir=self.out.parent))
        self.arrays: dict[str, np.ndarray] = {}

    def __enter__(self) -> DatasetStream:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def publish(self) -> Path:
        """Rename the finished temporary directory to ``out`` (the old dataset goes only after the rename)."""
        self.arrays.clear()  # release the memory maps before the rename
        return publish(self.tmp, self.out)

    def array(self, modality: str, shape: Sequence[int], dtype: str | np.dtype = "float32") -> np.ndarray:
        self.arrays[modality] = np.lib.format.open_memmap(self.tmp / f"{modality}.npy", mode="w+", dtype=dtype,
                                                          shape=tuple(shape))
        return self.arrays[modality]

    def labels(self, shape: Sequence[int], dtype: str | np.dtype = "int64") -> np.ndarray:
        """A memory-mapped ``labels.npy`` to fill in chunks (per-pixel labels); then ``commit(None, ...)``."""
        self._labels = np.lib.format.open_memmap(self.tmp / "labels.npy", mode="w+", dtype=dtype, shape=tuple(shape))
        return self._labels

    def keep_rows(self, count: int) -> None:
        """Cut every array written through ``array()`` / ``labels()`` to its first ``count`` rows: a converter
        that left samples out (``--skip-bad``) fills the first rows of arrays sized for all of them. The
        memory maps returned before are replaced (``arrays[name]``)."""
        named = list(self.arrays.items())
        if getattr(self, "_labels", None) is not None:
            named.append(("labels.npy", self._labels))
        for name, array in named:
            if len(array) == count:
                continue
            path = Path(array.filename)
            array.flush()
            full = path.with_name(f"{path.stem}.all-rows.npy")
            os.replace(path, full)
            source = np.load(full, mmap_mode="r")
            target = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=(count, *array.shape[1:]))
            step = max(1, (64 << 20) // max(1, array[0].nbytes))  # about 64 MB per copy
            for start in range(0, count, step):
                stop = min(count, start + step)
                target[start:stop] = source[start:stop]
            del source
            full.unlink()
            if name == "labels.npy":
                self._labels = target
            else:
                self.arrays[name] = target

    def commit(self, labels: np.ndarray | None, classes: Sequence[str], name: str, source: str,
               splits: Mapping[str, Sequence[int]], task: str = "classification", extra_meta: Mapping | None = None,
               extra_files: Mapping[str, str | bytes] | None = None) -> Path:
        """Write labels (or keep those filled through ``labels()``), splits and meta.json, then rename."""
        written = getattr(self, "_labels", None)
        if labels is None and written is None:
            raise ValueError(f"{name}: no labels given and none written through DatasetStream.labels()")
        count = len(written) if labels is None else len(labels)
        for split, problem in split_problems({k: [int(i) for i in v] for k, v in splits.items()}, count):
            raise ValueError(f"{name}: splits: {split}: {problem}")  # the reader would refuse the dataset
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
            "xmodal_version": __version__,
            **(extra_meta or {}),
            "sha256": {f: sha256_of(self.tmp / f) for f in files},
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return self.publish()


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
