"""AV-MNIST (Vielzeuf et al., CentralNet 2018; MST-Distill's benchmark) -> xmodal's on-disk format.

Input: the released ``avmnist`` folder (MultiBench's layout, read as MST-Distill's ``utils.get_av_mnist``
reads it)::

    <src>/image/train_data.npy   (60000, 784)       MNIST digits with most PCA energy removed
    <src>/image/test_data.npy    (10000, 784)
    <src>/audio/train_data.npy   (60000, 112, 112)  FSDD spectrograms mixed with noise
    <src>/audio/test_data.npy    (10000, 112, 112)
    <src>/train_labels.npy       (60000,)           digits 0-9
    <src>/test_labels.npy        (10000,)

``--src`` may also be the folder that holds ``avmnist/`` (the official ``root``). Per-sample layouts
flat, H×W or 1×H×W are accepted.

Output: ``image`` float32 1×28×28 and ``audio`` float32 1×112×112, train samples then test samples
(the official order, so the official split groups index the same samples), 10 classes, the official
60/20/20 split by default. Scaling follows the official ``min_max_normalize``, whose axes depend on
the array's rank: a (N, 784) or (N, H, W) array - the released layouts - is scaled **per sample**
to [0, 1]; a (N, 1, H, W) array once over the whole set. ``meta.json`` records the rule applied and
the raw value range. A constant sample (0/0, NaN in the official loader) is written as zeros and
counted in ``meta.json``.

Arrays are read memory-mapped and written in chunks of about 64 MB, so the ~3.5 GB of audio never
sits in memory at once; the output is staged in a temporary directory renamed into place at the end.

    python data_prep/avmnist.py --src /path/to/avmnist --out data/avmnist
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.writer import DatasetStream, add_common_arguments, refuse_existing, splits_from_args  # noqa: E402
from xmodal.errors import DatasetFormatError  # noqa: E402

NAME = "avmnist"
SHAPES = {"image": (1, 28, 28), "audio": (1, 112, 112)}
CLASSES = [str(d) for d in range(10)]
PARTS = ("train", "test")  # the official concatenation order
CHUNK_BYTES = 1 << 26  # rows per step sized by bytes: ~650 audio samples, ~10k images
LAYOUT_HINT = "the avmnist release layout (image/, audio/, train_labels.npy, test_labels.npy)"


def resolve_source(src: str | Path) -> Path:
    """The folder holding ``image/``, ``audio/`` and the label files; also accepts its parent."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DatasetFormatError(src, "src", f"directory does not exist; expected {LAYOUT_HINT}")
    if not (src / "image").is_dir() and (src / NAME / "image").is_dir():
        return src / NAME
    return src


def _load(path: Path, field: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetFormatError(path, field, f"file missing; expected {LAYOUT_HINT}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFormatError(path, field, f"not a readable .npy array ({err})") from err
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DatasetFormatError(path, field, f"dtype {array.dtype}; expected integer or floating-point numbers")
    return array


def _labels(src: Path, part: str) -> np.ndarray:
    path = src / f"{part}_labels.npy"
    label = np.asarray(_load(path, "labels"))
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if label.ndim != 1:
        raise DatasetFormatError(path, "labels", f"shape {list(label.shape)}; expected one digit per sample (N,)")
    if label.size and (label.min() < 0 or label.max() > 9 or not np.all(label == np.round(label))):
        bad = int(np.argmax((label < 0) | (label > 9) | (label != np.round(label))))
        raise DatasetFormatError(path, "labels", f"value {label[bad].item()!r} at row {bad}; expected digits 0-9")
    return label.astype(np.int64)


def _modality(src: Path, modality: str, part: str, count: int) -> np.ndarray:
    path = src / modality / f"{part}_data.npy"
    array = _load(path, modality)
    shape = SHAPES[modality]
    accepted = ((int(np.prod(shape)),), shape[1:], shape)
    if array.ndim < 2 or tuple(array.shape[1:]) not in accepted:
        raise DatasetFormatError(path, "shape", f"array shape {list(array.shape)}; expected N × one of "
                                 f"{[list(a) for a in accepted]} per sample")
    if len(array) != count:
        raise DatasetFormatError(path, "length", f"{len(array)} samples but {part}_labels.npy has {count}")
    return array


def _rows_per_chunk(array: np.ndarray) -> int:
    return max(1, CHUNK_BYTES // (8 * int(np.prod(array.shape[1:]))))


def _work_dtype(parts: list[tuple[Path, np.ndarray]]) -> np.dtype:
    # the official loader computes in the dtype of train+test concatenated; integers become float64 on division
    dtype = np.result_type(*(array.dtype for _, array in parts))
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _chunks(path: Path, array: np.ndarray, work: np.dtype) -> Iterator[np.ndarray]:
    """Yields (rows, values) chunks in the dtype ``work``, refusing NaN/Inf."""
    step = _rows_per_chunk(array)
    for start in range(0, len(array), step):
        chunk = np.asarray(array[start:start + step], dtype=work).reshape(min(step, len(array) - start), -1)
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            bad = start + int(np.argmin(finite))
            raise DatasetFormatError(path, "values", f"NaN or Inf in row {bad}; expected finite numbers")
        yield chunk


def _write_modality(stream: DatasetStream, modality: str, parts: list[tuple[Path, np.ndarray]], total: int) -> dict:
    """Scale and write one modality; returns its meta.json record."""
    shape = SHAPES[modality]
    per_sample = parts[0][1].ndim in (2, 3)  # min_max_normalize: rank 2/3 per row, rank 4 per channel over all
    work, low, high = _work_dtype(parts), np.inf, -np.inf
    if not per_sample:
        for path, array in parts:
            for chunk in _chunks(path, array, work):
                low, high = min(low, chunk.min()), max(high, chunk.max())
    target = stream.array(modality, (total, *shape), "float32")
    row, constant = 0, 0
    for path, array in parts:
        for chunk in _chunks(path, array, work):
            if per_sample:
                lo, hi = chunk.min(axis=1, keepdims=True), chunk.max(axis=1, keepdims=True)
                low, high = min(low, lo.min()), max(high, hi.max())
            else:
                lo, hi = np.asarray(low, chunk.dtype), np.asarray(high, chunk.dtype)
            span = hi - lo
            flat = span == 0
            scaled = (chunk - lo) / np.where(flat, 1, span).astype(chunk.dtype)
            if flat.any():  # 0/0 in the official loader; zeros keep training finite
                scaled[np.broadcast_to(flat, scaled.shape)] = 0
                constant += int(flat.sum()) if per_sample else len(chunk)
            target[row:row + len(chunk)] = scaled.reshape(len(chunk), *shape)
            row += len(chunk)
    return {
        "mode": "per_sample" if per_sample else "global",
        "rule": "min-max to [0, 1] " + ("per sample" if per_sample else "over the whole set (train + test)")
                + f" (MST-Distill utils.min_max_normalize on the {parts[0][1].ndim}-D source array)",
        "applied_by": "converter",
        "source_shape": list(parts[0][1].shape[1:]),
        "source_dtype": str(parts[0][1].dtype),
        "compute_dtype": str(work),
        "raw_min": float(low),
        "raw_max": float(high),
        "constant_samples_zeroed": constant,
    }


def convert(src: str | Path, out: str | Path, split_group: int = 0, split_file: str | None = None,
            force: bool = False) -> Path:
    """Convert the ``avmnist`` release at ``src`` into an xmodal dataset at ``out``; returns ``out``."""
    refuse_existing(out, force)
    src = resolve_source(src)
    labels, parts = [], {m: [] for m in SHAPES}
    for part in PARTS:
        label = _labels(src, part)
        for modality in SHAPES:
            path = src / modality / f"{part}_data.npy"
            array = _modality(src, modality, part, len(label))
            if parts[modality] and array.shape[1:] != parts[modality][0][1].shape[1:]:
                raise DatasetFormatError(path, "shape", f"per-sample shape {list(array.shape[1:])} differs from "
                                         f"train_data.npy's {list(parts[modality][0][1].shape[1:])}; the official "
                                         "loader concatenates the two")
            parts[modality].append((path, array))
        labels.append(label)
    labels = np.concatenate(labels)
    if not len(labels):
        raise DatasetFormatError(src / "train_labels.npy", "labels", "no samples in the train or test files")
    splits = splits_from_args(argparse.Namespace(split_file=split_file, split_group=split_group), len(labels))
    with DatasetStream(out, force=force) as stream:
        normalization = {m: _write_modality(stream, m, parts[m], len(labels)) for m in SHAPES}
        n_train = len(parts["image"][0][1])
        return stream.commit(
            labels, CLASSES, NAME, splits=splits,
            source=f"AV-MNIST release {src.name}/ (MNIST images + FSDD spectrograms): train files then test files",
            extra_meta={
                "normalization": normalization,
                "source_rows": {"train": [0, n_train], "test": [n_train, len(labels)]},  # [start, end)
                "split_protocol": f"file {Path(split_file).name}" if split_file else
                f"MST-Distill official, group_{split_group} (seed 19980427, 60/20/20)",
                **provenance([src / f"{part}_labels.npy" for part in PARTS] + [split_file],
                             [path for m in SHAPES for path, _ in parts[m]], root=src),
            },
        )


@cli_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert the AV-MNIST release (avmnist/ folder of .npy arrays) "
                                     "to xmodal's format.")
    parser.add_argument("--src", required=True, help="the avmnist folder (image/, audio/, *_labels.npy) or its parent")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    try:
        out = convert(args.src, args.out, args.split_group, args.split_file, args.force)
    except (DatasetFormatError, FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
