"""AV-MNIST (Vielzeuf et al., CentralNet 2018; MST-Distill's benchmark) -> xmodal's on-disk format.

Input: the released ``avmnist`` folder, as MST-Distill's loader reads it::

    <src>/image/train_data.npy   (N_train, 784) or (N_train, 28, 28)   MNIST digits, PCA-degraded
    <src>/image/test_data.npy
    <src>/audio/train_data.npy   (N_train, 112, 112) or (N_train, 12544)  FSDD spectrograms with noise
    <src>/audio/test_data.npy
    <src>/train_labels.npy       (N_train,) digits 0-9
    <src>/test_labels.npy

Output: ``image`` float32 1×28×28 and ``audio`` float32 1×112×112, train samples then test samples
(the official order, so the official split groups index the same samples), each modality min-max
scaled over the whole set as the official loader does (the extremes are recorded in meta.json),
10 classes, the official 60/20/20 split by default. Arrays are read memory-mapped and written in
chunks: the ~3.5 GB of audio never sits in memory at once.

    python data_prep/avmnist.py --src /path/to/avmnist --out data/avmnist
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.data.errors import DatasetFormatError  # noqa: E402
from xmodal.data.writer import DatasetStream, add_common_arguments, splits_from_args  # noqa: E402

SHAPES = {"image": (1, 28, 28), "audio": (1, 112, 112)}
CLASSES = [str(d) for d in range(10)]
CHUNK = 4096


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetFormatError(path, what, "file missing; expected the avmnist release layout "
                                 "(image/, audio/, train_labels.npy, test_labels.npy)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFormatError(path, what, f"not a readable .npy array ({err})") from err


def _source_arrays(src: Path) -> tuple[dict[str, list[tuple[Path, np.ndarray]]], np.ndarray]:
    parts: dict[str, list[tuple[Path, np.ndarray]]] = {m: [] for m in SHAPES}
    labels = []
    for part in ("train", "test"):
        label = np.asarray(_load(src / f"{part}_labels.npy", "labels"))
        if label.ndim != 1 or not np.issubdtype(label.dtype, np.number):
            raise DatasetFormatError(src / f"{part}_labels.npy", "labels", f"expected a 1-D array, got {label.shape}")
        if label.size and (label.min() < 0 or label.max() > 9 or not np.all(label == np.round(label))):
            raise DatasetFormatError(src / f"{part}_labels.npy", "labels", "expected digits 0-9")
        for modality, shape in SHAPES.items():
            path = src / modality / f"{part}_data.npy"
            array = _load(path, modality)
            if len(array) != len(label):
                raise DatasetFormatError(path, "length", f"{len(array)} samples but {part}_labels.npy has {len(label)}")
            if int(np.prod(array.shape[1:])) != int(np.prod(shape)):
                raise DatasetFormatError(path, "shape", f"per-sample shape {list(array.shape[1:])}; expected "
                                         f"{int(np.prod(shape))} values ({'×'.join(map(str, shape[1:]))})")
            parts[modality].append((path, array))
        labels.append(label.astype(np.int64))
    return parts, np.concatenate(labels)


def _extremes(arrays: Sequence[tuple[Path, np.ndarray]]) -> tuple[float, float]:
    low, high = np.inf, -np.inf
    for path, array in arrays:
        for start in range(0, len(array), CHUNK):
            chunk = np.asarray(array[start:start + CHUNK], dtype=np.float64)
            if not np.isfinite(chunk).all():
                bad = start + int(np.argmax(~np.isfinite(chunk).reshape(len(chunk), -1).all(1)))
                raise DatasetFormatError(path, "values", f"non-finite value (NaN/Inf) in row {bad}")
            low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    return low, high


def convert(src: str | Path, out: str | Path, split_group: int = 0, split_file: str | None = None,
            force: bool = False) -> Path:
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DatasetFormatError(src, "src", "directory does not exist")
    parts, labels = _source_arrays(src)
    splits = splits_from_args(argparse.Namespace(split_file=split_file, split_group=split_group), len(labels))
    scaling = {}
    with DatasetStream(out, force=force) as stream:
        for modality, shape in SHAPES.items():
            low, high = _extremes(parts[modality])
            scaling[modality] = {"min": low, "max": high}
            target = stream.array(modality, (len(labels), *shape), "float32")
            row = 0
            for _, array in parts[modality]:
                for start in range(0, len(array), CHUNK):
                    chunk = np.asarray(array[start:start + CHUNK], dtype=np.float64)
                    scaled = (chunk - low) / (high - low) if high > low else np.zeros_like(chunk)
                    target[row:row + len(chunk)] = scaled.reshape(len(chunk), *shape)
                    row += len(chunk)
        return stream.commit(
            labels, CLASSES, "avmnist", source="AV-MNIST release (MNIST images + FSDD spectrograms), train then test",
            splits=splits,
            extra_meta={"normalization": {"mode": "global_min_max", **{m: s for m, s in scaling.items()}},
                        "split": {"protocol": "file" if split_file else "mst-distill official", "group": split_group}},
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert the AV-MNIST release to xmodal's format.")
    parser.add_argument("--src", required=True, help="the avmnist folder (image/, audio/, *_labels.npy)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    out = convert(args.src, args.out, args.split_group, args.split_file, args.force)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
