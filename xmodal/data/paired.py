"""Reader of xmodal's on-disk dataset format (docs/data_format.md): paired modalities, labels, splits.

Layout of a dataset directory::

    meta.json      {"name", "version", "task", "classes", "modalities": {m: {"shape", "dtype"}}}
    splits.json    {"train": [indices], "val": [...], "test": [...]}
    <m>.npy        N × shape, opened memory-mapped
    labels.npy     N integer class ids (−1: an unlabelled sample, e.g. a pair nobody annotated)

Everything is checked when the dataset is opened, so a bad file fails before training starts,
with one :class:`DatasetFormatError` naming the file and field.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from xmodal.data.fingerprint import describe_json
from xmodal.data.labelled import (
    UNLABELLED,
    budget_mask,
    labelled_record,
    parse_budget,
    parse_subset,
    subset_positions,
)
from xmodal.data.manifest import file_identity, inside_root, is_plain_name, verify_checksums, want_verify
from xmodal.data.splits import split_problems
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS, TRANSFORMS

_TASKS = ("classification", "retrieval", "detection")
_FINITE_CHUNK = 1 << 22  # elements checked per step, keeps the NaN scan memory-flat


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetFormatError(path, "file", "missing; expected an xmodal dataset file (see docs/data_format.md)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(path, "json", f"not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DatasetFormatError(path, "json", f"expected a JSON object, got {type(data).__name__}")
    return data


def read_task_meta(data_root: Path, allow_outside_root: bool, required: tuple[str, ...], task: str,
                   reader: str) -> tuple[Path, dict]:
    """``meta.json`` of a dataset of ``task``, with its ``required`` keys, as ``reader`` expects it."""
    path = inside_root(data_root, data_root / "meta.json", "file", allow_outside_root)
    meta = read_json(path)
    for key in required:
        if key not in meta:
            raise DatasetFormatError(path, key, "required key missing")
    if meta["task"] != task:
        raise DatasetFormatError(path, "task", f"got {meta['task']!r}; {reader}")
    return path, meta


def _open_array(path: Path, field: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetFormatError(path, field, "file missing")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFormatError(path, field, f"not a readable .npy array ({err})") from err


def _check_finite(array: np.ndarray, path: Path, field: str) -> None:
    flat = array.reshape(-1)
    for start in range(0, flat.size, _FINITE_CHUNK):
        chunk = np.asarray(flat[start : start + _FINITE_CHUNK])
        bad = ~np.isfinite(chunk)
        if bad.any():
            pos = start + int(np.argmax(bad))
            row = pos // max(1, int(np.prod(array.shape[1:])))
            raise DatasetFormatError(path, field, f"non-finite value (NaN/Inf) in row {row}; expected finite numbers")


def check_meta(meta: dict, path: Path, tasks: Sequence[str], expected_task: str,
               required: Sequence[str] = ()) -> dict:
    """The ``meta.json`` rules every array dataset shares: ``name``, ``task`` (one of ``tasks``; the error says
    ``expected_task``), ``modalities`` as ``{name: {shape, dtype}}``, and the ``required`` keys."""
    for key in ("name", "task", "modalities", *required):
        if key not in meta:
            raise DatasetFormatError(path, key, "required key missing")
    if meta["task"] not in tasks:
        raise DatasetFormatError(path, "task", f"got {meta['task']!r}; expected {expected_task}")
    if not isinstance(meta["modalities"], dict) or not meta["modalities"]:
        raise DatasetFormatError(path, "modalities", "expected a non-empty object {name: {shape, dtype}}")
    for name, spec in meta["modalities"].items():
        if not is_plain_name(name):  # it becomes <name>.npy: a path would read outside the dataset
            raise DatasetFormatError(path, "modalities", f"modality name {name!r} is not a plain file name; "
                                     "expected no '/', '\\' or '..' (it names <name>.npy in the dataset folder)")
        if not isinstance(spec, dict) or "shape" not in spec or "dtype" not in spec:
            raise DatasetFormatError(path, f"modalities.{name}", "expected {'shape': [...], 'dtype': '...'}")
        shape = spec["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise DatasetFormatError(path, f"modalities.{name}.shape", f"got {shape!r}; expected a list of integers")
        if any(d <= 0 for d in shape):
            raise DatasetFormatError(path, f"modalities.{name}.shape", f"{shape} has a dimension of size "
                                     f"{min(shape)}; expected every per-sample dimension >= 1")
    classes = meta.get("classes")
    if isinstance(classes, list):
        seen: dict = {}
        for position, name in enumerate(classes):
            if not isinstance(name, (str, int)) or isinstance(name, bool):
                raise DatasetFormatError(path, "classes", f"class {position} is {name!r}; expected a name")
            if name in seen:
                raise DatasetFormatError(path, "classes", f"{name!r} is listed twice (positions {seen[name]} and "
                                         f"{position}); expected distinct class names")
            seen[name] = position
    return meta


@DATASETS.register_module()
class PairedDataset(Dataset):
    """Samples of one split as dicts ``{modality: Tensor, "label": LongTensor, "index": LongTensor}``.

    Args:
        data_root: dataset directory.
        split: a key of ``splits.json``.
        modalities: the modalities to load; default all in ``meta.json``.
        pipeline: transforms (configs or callables) applied to each sample dict in order.
        check_finite: scan float arrays for NaN/Inf when opening (one pass over the data).
        subset: ``dict(part=0, of=2, seed=0)``: only this disjoint, class-stratified part of the split.
        labelled: ``dict(fraction=0.1, seed=0)`` or ``dict(ids_file=...)``: the samples that keep their
            labels; the others read as unlabelled (label −1). See :mod:`xmodal.data.labelled`.
        verify: check the files read against the SHA-256 in ``meta.json``: ``"auto"`` when they total at
            most ``xmodal.data.manifest.VERIFY_AUTO_BYTES`` and meta.json has checksums, True always
            (checksums required), False never. ``xmodal-verify DATA_ROOT`` checks every file.
        allow_outside_root: read files that resolve (through a symlink) outside ``data_root``.
    """

    def __init__(
        self,
        data_root: str | Path,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        pipeline: Sequence[dict | Callable] = (),
        check_finite: bool = True,
        subset: dict | None = None,
        labelled: dict | None = None,
        verify: bool | str = "auto",
        allow_outside_root: bool = False,
    ) -> None:
        self.data_root = Path(data_root).expanduser()
        self.split = split
        self.allow_outside_root = bool(allow_outside_root)
        if not self.data_root.is_dir():
            raise DatasetFormatError(self.data_root, "data_root", "directory does not exist")
        self.meta = self._read_meta()
        self.modalities = self._select_modalities(modalities)
        self.arrays = {m: self._open_modality(m, check_finite) for m in self.modalities}
        self.labels = self._open_labels()
        self.indices = self._read_split()
        self.checksums = self._verify(verify)
        self.subset = parse_subset(subset, f"{type(self).__name__}.subset")
        self.budget = parse_budget(labelled, split, f"{type(self).__name__}.labelled")
        if self.subset is not None:
            self.indices = self.indices[subset_positions(self._split_classes(), len(self.indices), self.subset)]
        self.labelled_flags = self._labelled_flags()
        self.pipeline_cfg = [dict(t) if isinstance(t, dict) else None for t in pipeline]  # for fingerprint()
        self.pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]

    # -- validation, one concern per method -------------------------------------------------
    def _file(self, name: str, field: str) -> Path:
        """``data_root / name``, refused if it resolves outside ``data_root`` (unless allowed)."""
        return inside_root(self.data_root, self.data_root / name, field, self.allow_outside_root)

    @property
    def files(self) -> list[str]:
        """The files this dataset reads, by name."""
        return [f"{m}.npy" for m in self.modalities] + ["labels.npy", "splits.json"]

    def _verify(self, verify: bool | str) -> dict[str, str]:
        meta_path = self.data_root / "meta.json"
        sizes = [(self.data_root / name).stat().st_size for name in self.files]
        if not want_verify(verify, sizes, type(self).__name__):
            return {}
        recorded = self.meta.get("sha256")
        if verify == "auto" and not isinstance(recorded, dict):
            return {}  # a hand-made dataset without checksums: nothing to compare with
        if verify is True and isinstance(recorded, dict):
            unlisted = [name for name in self.files if name not in recorded]
            if unlisted:
                raise DatasetFormatError(meta_path, "sha256", f"no checksum for {unlisted}; verify=True needs one "
                                         "for every file read")
        return verify_checksums(self.data_root, self.meta, meta_path, self.files, self.allow_outside_root)

    def _read_meta(self) -> dict:
        path = self._file("meta.json", "file")
        meta = check_meta(read_json(path), path, _TASKS, f"one of {_TASKS}")
        if meta["task"] == "classification":
            classes = meta.get("classes")
            if not isinstance(classes, list) or not classes:
                raise DatasetFormatError(path, "classes", "a classification dataset needs a non-empty class list")
        return meta

    def _select_modalities(self, modalities: Sequence[str] | None) -> list[str]:
        available = list(self.meta["modalities"])
        if modalities is None:
            return available
        unknown = [m for m in modalities if m not in available]
        if unknown:
            # a <m>.npy without a meta.json entry is the usual cause: say so rather than only "not in this dataset"
            stray = [f"{m}.npy" for m in unknown if (self.data_root / f"{m}.npy").is_file()]
            hint = f"; {stray} exist but meta.json does not declare them (add modalities.<name>: " \
                   f"{{shape, dtype}})" if stray else ""
            raise DatasetFormatError(
                self.data_root / "meta.json", "modalities", f"{unknown} not in this dataset; it has {available}{hint}"
            )
        return list(modalities)

    def _open_modality(self, name: str, check_finite: bool) -> np.ndarray:
        path = self._file(f"{name}.npy", f"modality '{name}'")
        spec = self.meta["modalities"][name]
        array = _open_array(path, f"modality '{name}'")
        if list(array.shape[1:]) != list(spec["shape"]):
            raise DatasetFormatError(
                path, "shape", f"per-sample shape {list(array.shape[1:])} but meta.json says {spec['shape']}"
            )
        if str(array.dtype) != str(spec["dtype"]):
            raise DatasetFormatError(path, "dtype", f"{array.dtype} but meta.json says {spec['dtype']}")
        if check_finite and np.issubdtype(array.dtype, np.floating):
            _check_finite(array, path, f"modality '{name}'")
        return array

    def _open_labels(self) -> np.ndarray:
        path = self._file("labels.npy", "labels")
        labels = _open_array(path, "labels")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetFormatError(path, "labels", f"expected a 1-D integer array, got {labels.dtype} {labels.shape}")
        for name, array in self.arrays.items():
            if len(array) != len(labels):
                raise DatasetFormatError(
                    self.data_root / f"{name}.npy", "length", f"{len(array)} samples but labels.npy has {len(labels)}"
                )
        if self.meta["task"] == "classification" and len(labels):
            num_classes = len(self.meta["classes"])
            low, high = int(labels.min()), int(labels.max())
            if low < UNLABELLED or high >= num_classes:
                bad = int(np.flatnonzero((labels < UNLABELLED) | (labels >= num_classes))[0])
                raise DatasetFormatError(
                    path, "labels", f"label {int(labels[bad])} at row {bad} is outside [0, {num_classes - 1}] "
                                    f"(or {UNLABELLED} for an unlabelled sample)"
                )
        return labels

    def _read_split(self) -> np.ndarray:
        path = self._file("splits.json", "file")
        splits = read_json(path)
        if self.split not in splits:
            near = difflib.get_close_matches(self.split, list(splits), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise DatasetFormatError(path, self.split, f"split missing; the file has {sorted(splits)}{hint}")
        raw = splits[self.split]
        if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
            raise DatasetFormatError(path, self.split, "expected a list of integer sample indices")
        if not raw:
            raise DatasetFormatError(path, self.split, "split is empty")
        indices = np.asarray(raw, dtype=np.int64)
        n = len(self.labels)
        bad = np.flatnonzero((indices < 0) | (indices >= n))
        if bad.size:
            raise DatasetFormatError(
                path, self.split, f"index {int(indices[bad[0]])} at position {int(bad[0])} is outside [0, {n - 1}]"
            )
        for split, problem in split_problems(splits, n):  # every split: no sample twice, none in two splits
            raise DatasetFormatError(path, split, problem)
        return indices

    # -- label budget ----------------------------------------------------------------------------
    def _split_classes(self) -> np.ndarray | None:
        """Each position's class id (−1 if unlabelled on disk): what subsets and budgets stratify by."""
        return np.asarray(self.labels[self.indices]).astype(np.int64)

    def _labelled_flags(self) -> np.ndarray:
        classes = self._split_classes()
        if self.budget is None:
            return np.ones(len(self.indices), bool) if classes is None else classes != UNLABELLED
        return budget_mask(classes, self.indices, self.budget, f"{type(self).__name__}.labelled",
                           self.meta.get("classes"))

    @property
    def rows(self) -> np.ndarray:
        """The dataset row ids of this split's (and subset's) samples, in position order."""
        return self.indices

    @property
    def num_labelled(self) -> int:
        return int(self.labelled_flags.sum())

    def labelled_record(self) -> dict:
        """What ``labelled_ids.json`` holds: the labelled ids, the budget and the subset."""
        return labelled_record(self)

    # -- dataset protocol ---------------------------------------------------------------------
    @property
    def metainfo(self) -> dict:
        """Read by mmengine (stored in checkpoints); plain JSON types only."""
        return {"name": self.meta["name"], "classes": self.meta.get("classes"), "version": self.meta.get("version")}

    @property
    def num_classes(self) -> int:
        return len(self.meta.get("classes") or [])

    @property
    def stochastic_transforms(self) -> list[str]:
        """Transforms that draw random numbers (they declare ``stochastic = True``); with none, a
        sample is the same on every read, so per-sample teacher outputs can be cached."""
        return [type(t).__name__ for t in self.pipeline if getattr(t, "stochastic", False)]

    def fingerprint(self) -> str:
        """Identifies what this split yields: the dataset files' description, the files read (their
        verified SHA-256, else size and modification time, so an array edited in place gives another
        fingerprint), split, modalities, and the pipeline: each transform's config and its built state,
        torch modules' hyper-parameters and buffers included (``describe``), so e.g. another ``n_mels``
        gives another fingerprint."""
        digest = hashlib.sha256()
        for name in ("meta.json", "splits.json"):
            digest.update((self.data_root / name).read_bytes())
        digest.update(file_identity([self.data_root / name for name in self.files], self.checksums).encode())
        digest.update(repr((self.split, self.modalities, self.subset, self.budget)).encode())
        digest.update(describe_json([self.pipeline_cfg, self.pipeline]).encode())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        row = int(self.indices[position])
        # dtype=native: a big-endian .npy is valid numpy but torch only takes native byte order
        sample: dict = {m: torch.from_numpy(np.array(self.arrays[m][row], dtype=self.arrays[m].dtype.newbyteorder("=")))
                        for m in self.modalities}
        label = int(self.labels[row]) if self.labelled_flags[position] else UNLABELLED
        sample["label"] = torch.tensor(label, dtype=torch.long)
        sample["index"] = torch.tensor(position, dtype=torch.long)
        for transform in self.pipeline:
            sample = transform(sample)
        return sample
