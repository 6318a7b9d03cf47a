"""NYU-Depth-V2 (labelled subset, 1,449 RGB-D frames) -> xmodal's on-disk format, 41-class segmentation.

Two inputs are understood (both MATLAB v7.3 files, i.e. HDF5):

* the file MST-Distill's loader reads, ``NYU-Depth-V2_data.mat``: ``images``, ``depths`` and
  ``labels40`` (labels already in the 40-class set of Gupta et al. 2013, 0 = void);
* NYU's own ``nyu_depth_v2_labeled.mat`` (raw ``labels``, ~894 classes) together with
  ``classMapping40.mat`` (``mapClass``: raw class 1..894 -> 1..40; ``className``: the 40 names).

HDF5 holds MATLAB arrays with their axes reversed: images N × 3 × W × H, maps N × W × H. They are
transposed to N × 3 × H × W and N × H × W, kept at full resolution (480 × 640 for NYU, which the
FuseNet shapes of the official code assume), and written sample-chunk by sample-chunk into a
temporary directory that is renamed into place at the end. A truncated file is refused with its
size; a frame that cannot be read (a damaged compressed chunk) stops the conversion, naming it, or
with ``--skip-bad`` is left out and listed in ``meta.json`` ``skipped``.

Written: ``rgb.npy`` uint8 N×3×H×W, ``depth.npy`` float32 N×1×H×W (metres), ``labels.npy`` uint8
N×H×W (0 = void, 1..40 the classes), ``splits.json``, ``meta.json`` (``task: segmentation``,
``ignore_index: 0``, and the ``normalization`` the reader applies to reproduce the official input:
RGB min-max per channel over the whole set, depth min-max per frame).

    python data_prep/nyudv2.py --src NYU-Depth-V2_data.mat --out data/nyudv2
    python data_prep/nyudv2.py --src nyu_depth_v2_labeled.mat --class-mapping classMapping40.mat --out data/nyudv2
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.skipped import SkippedSources, add_skip_bad_argument, drop_from_splits  # noqa: E402
from xmodal.data.writer import (  # noqa: E402
    DatasetExistsError,
    DatasetStream,
    add_common_arguments,
    official_splits,
    read_split_file,
    refuse_existing,
)
from xmodal.errors import DatasetFormatError  # noqa: E402

NAME = "nyudv2"
OFFICIAL_FILE = "NYU-Depth-V2_data.mat"  # what MST-Distill's get_nyu_depth_v2 opens
RAW_FILE = "nyu_depth_v2_labeled.mat"
NUM_SAMPLES = 1449
VOID = 0
# The 40 classes of Gupta et al. (2013) in id order 1..40, spelled as in classMapping40.mat.
CLASSES_40 = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
CLASSES = ("void", *CLASSES_40)


def _require_h5py():
    try:
        import h5py
    except ImportError as err:  # a clear message instead of a bare ImportError deep in convert()
        raise ImportError("data_prep/nyudv2.py reads MATLAB v7.3 (HDF5) files and needs h5py: pip install h5py") \
            from err
    return h5py


def open_mat(h5py, path: Path):
    """The .mat file opened with h5py; a truncated or non-HDF5 file raises ``DatasetFormatError`` naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        # HDF5 refuses a file shorter than its superblock records (stored_eof: the whole file's size)
        cut = re.search(r"truncated file: .*stored_eof = (\d+)", str(err))
        if cut:
            size, expected = path.stat().st_size, int(cut.group(1))
            raise DatasetFormatError(path, "file", f"truncated: {size:,} bytes, but its HDF5 header records "
                                     f"{expected:,}; copy or download the file again (the frames of a file that "
                                     "cannot be opened cannot be skipped)") from None
        raise DatasetFormatError(path, "file", f"not an HDF5 / MATLAB v7.3 file ({err})") from err


def find_source(src: str | Path) -> Path:
    """``src`` itself if it is a file, else the official or the raw file inside the directory ``src``."""
    src = Path(src).expanduser()
    if src.is_file():
        return src
    if src.is_dir():
        for candidate in (OFFICIAL_FILE, f"NYU-Depth-V2/{OFFICIAL_FILE}", RAW_FILE):
            if (src / candidate).is_file():
                return src / candidate
        raise DatasetFormatError(src, "src", f"no {OFFICIAL_FILE} or {RAW_FILE} in this directory")
    raise DatasetFormatError(src, "src", "not found; expected the NYU-Depth-V2 .mat file or its directory")


def read_class_mapping(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Lookup table raw class id -> 0..40 (index 0, unlabelled, maps to void) and the 40 names if given.

    Accepts Gupta et al.'s ``classMapping40.mat`` (``mapClass``, ``className``) or a 1-D ``.npy``
    of the 1..40 targets of raw classes 1..K.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetFormatError(path, "class mapping", "file not found; expected classMapping40.mat")
    names = None
    if path.suffix.lower() == ".npy":
        mapping = np.load(path, allow_pickle=False)
    else:
        import scipy.io

        try:
            content = scipy.io.loadmat(path)
        except (ValueError, NotImplementedError, OSError) as err:
            raise DatasetFormatError(path, "class mapping", f"not a readable MATLAB file ({err})") from err
        if "mapClass" not in content:
            keys = sorted(k for k in content if not k.startswith("__"))
            raise DatasetFormatError(path, "mapClass", f"variable missing; the file has {keys}")
        mapping = content["mapClass"]
        if "className" in content:
            names = [str(np.asarray(n).reshape(-1)[0]) for n in np.asarray(content["className"]).reshape(-1)]
    mapping = np.asarray(mapping).reshape(-1)
    if mapping.size == 0 or not np.all(np.isfinite(mapping)) or np.any(mapping != np.round(mapping)) \
            or mapping.min() < 0 or mapping.max() > len(CLASSES_40):
        raise DatasetFormatError(path, "mapClass", f"expected integer targets in [0, {len(CLASSES_40)}]")
    if names is not None and len(names) != len(CLASSES_40):
        raise DatasetFormatError(path, "className", f"{len(names)} names; expected {len(CLASSES_40)}")
    return np.concatenate([[VOID], mapping]).astype(np.uint8), names


class _Source:
    """The HDF5 file's three arrays, checked once: keys, ranks, agreeing sizes, dtypes."""

    def __init__(self, h5, path: Path) -> None:
        self.path = path
        keys = sorted(h5.keys())
        label_key = "labels40" if "labels40" in h5 else "labels"  # the official file's 41-class maps first
        for key in ("images", "depths", label_key):
            if key not in h5:
                hint = " (the official file has 'labels40'; NYU's raw file has 'labels')" if key.startswith("labels") \
                    else ""
                raise DatasetFormatError(path, key, f"dataset missing; expected images, depths and labels40/labels"
                                         f"{hint}; the file has {keys}")
        self.label_key = label_key
        self.images, self.depths, self.labels = h5["images"], h5["depths"], h5[label_key]
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DatasetFormatError(path, "images", f"shape {list(self.images.shape)}; expected N x 3 x W x H "
                                     "(MATLAB's H x W x 3 x N as HDF5 stores it)")
        if self.images.dtype != np.uint8:
            raise DatasetFormatError(path, "images", f"dtype {self.images.dtype}; expected uint8")
        n, _, w, h = self.images.shape
        for key, array in (("depths", self.depths), (label_key, self.labels)):
            if tuple(array.shape) != (n, w, h):
                raise DatasetFormatError(path, key, f"shape {list(array.shape)}; expected {[n, w, h]} to match images")
        if not np.issubdtype(self.depths.dtype, np.floating):
            raise DatasetFormatError(path, "depths", f"dtype {self.depths.dtype}; expected floating-point metres")
        if not (np.issubdtype(self.labels.dtype, np.integer) or np.issubdtype(self.labels.dtype, np.floating)):
            raise DatasetFormatError(path, label_key, f"dtype {self.labels.dtype}; expected integer class ids")
        if n == 0:
            raise DatasetFormatError(path, "images", "no samples")
        self.num_samples, self.height, self.width = n, h, w


def _to_label_ids(raw: np.ndarray, lut: np.ndarray | None, src: _Source, frames: Sequence[int]) -> np.ndarray:
    """One chunk of label maps (already H × W; ``frames``: their numbers in the file) -> uint8 ids 0..40,
    mapping raw classes if ``lut``."""
    limit = len(lut) - 1 if lut is not None else len(CLASSES_40)
    if np.issubdtype(raw.dtype, np.floating) and (not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw))):
        raise DatasetFormatError(src.path, src.label_key, f"non-integer value in maps {frames[0]}..{frames[-1]}")
    bad = (raw < 0) | (raw > limit)
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), raw.shape)
        what = "raw class ids covered by the class mapping" if lut is not None else "the 41-class ids"
        raise DatasetFormatError(src.path, src.label_key, f"value {raw[pos]} in map {frames[int(pos[0])]} is outside "
                                 f"[0, {limit}] ({what})")
    if lut is not None:
        return lut[raw.astype(np.intp) if np.issubdtype(raw.dtype, np.floating) else raw]
    return raw.astype(np.uint8)


def convert(src: str | Path, out: str | Path, class_mapping: str | Path | None = None,
            splits: dict[str, Sequence[int]] | None = None, split_group: int = 0, chunk: int = 16,
            force: bool = False, split_file: str | Path | None = None, skip_bad: bool = False) -> Path:
    """Convert NYU-Depth-V2 at ``src`` (a .mat file or its directory) into ``out``; returns ``out``.

    ``class_mapping`` is required for NYU's raw labelled file (``labels``, ~894 classes) and ignored
    for a file with ``labels40``. ``splits`` defaults to the official MST-Distill split ``split_group``
    (seeded permutation of the 1,449 frames in file order, cut 60/20/20); ``split_file``, the file
    they were read from, is recorded in ``meta.json``. A frame whose data cannot be read (a damaged
    compressed chunk) stops the conversion, naming the file, the array and the frame; ``skip_bad``
    leaves such frames out instead (listed in meta.json ``skipped``; the splits, drawn over all
    frames, are renumbered). A truncated file cannot be opened at all, so nothing can be skipped.
    """
    h5py = _require_h5py()
    out = refuse_existing(out, force)
    path = find_source(src)
    with open_mat(h5py, path) as h5:
        source = _Source(h5, path)
        lut, names = None, None
        if source.label_key == "labels":
            if class_mapping is None:
                raise DatasetFormatError(path, "labels", "raw NYU labels (~894 classes) need the 40-class mapping: "
                                         "pass --class-mapping classMapping40.mat (or use the file with 'labels40')")
            lut, names = read_class_mapping(class_mapping)
        classes = ["void", *names] if names else list(CLASSES)
        if splits is None:
            splits = official_splits(source.num_samples, split_group)
            protocol = f"official MST-Distill 60/20/20, group {split_group}"
        else:
            protocol = "given"
        splits = {k: [int(i) for i in v] for k, v in splits.items()}
        # the .mat holds the data itself (2.8 GB): its size is recorded, the small files are hashed
        sources = provenance([class_mapping, split_file], [path], root=path.parent)
        skipped = SkippedSources(skip_bad, path.parent)
        return _write(source, out, lut, classes, splits, protocol, max(1, int(chunk)), sources, skipped)


def _read_frames(source: _Source, start: int, stop: int, skipped: SkippedSources) -> tuple[list[int], list]:
    """Frames ``start:stop`` as (indices, [images, depths, label maps]) in HDF5's axis order. A chunk that
    fails to read (a damaged compressed chunk) is read again frame by frame to name the bad frames."""
    arrays = (("images", source.images), ("depths", source.depths), (source.label_key, source.labels))
    try:
        return list(range(start, stop)), [np.asarray(array[start:stop]) for _, array in arrays]
    except OSError:
        pass
    frames, parts = [], [[], [], []]
    for index in range(start, stop):
        try:
            values = []
            for key, array in arrays:
                failed = key
                values.append(np.asarray(array[index:index + 1]))
        except OSError as err:
            skipped.handle(DatasetFormatError(source.path, failed, f"frame {index} cannot be read ({err}); the file is "
                                              "damaged: copy or download it again"), f"frame {index}")
            continue
        frames.append(index)
        for part, value in zip(parts, values):
            part.append(value)
    return frames, [np.concatenate(part) if part else None for part in parts]


def _write(source: _Source, out: Path, lut: np.ndarray | None, classes: list[str], splits: dict[str, list[int]],
           protocol: str, chunk: int, sources: dict, skipped: SkippedSources) -> Path:
    n, h, w = source.num_samples, source.height, source.width
    with DatasetStream(out, force=True) as stream:  # convert() has already refused an existing dataset
        rgb = stream.array("rgb", (n, 3, h, w), np.uint8)
        depth = stream.array("depth", (n, 1, h, w), np.float32)
        labels = stream.labels((n, h, w), np.uint8)  # uint8: 0.45 GB instead of 3.6 GB as int64
        rgb_min, rgb_max = np.full(3, 255, np.int64), np.zeros(3, np.int64)
        kept: list[int] = []  # frames written, in order; readable frames fill the first rows
        for start in range(0, n, chunk):
            frames, (raw_images, raw_depths, raw_labels) = _read_frames(source, start, min(n, start + chunk), skipped)
            if not frames:
                continue
            row, stop = len(kept), len(kept) + len(frames)
            images = raw_images.transpose(0, 1, 3, 2)  # N,3,W,H -> N,3,H,W
            rgb_min = np.minimum(rgb_min, images.min(axis=(0, 2, 3)))
            rgb_max = np.maximum(rgb_max, images.max(axis=(0, 2, 3)))
            d = raw_depths.astype(np.float32).transpose(0, 2, 1)
            if not np.all(np.isfinite(d)):
                bad = frames[int(np.argmax(~np.isfinite(d).reshape(len(d), -1).all(axis=1)))]
                raise DatasetFormatError(source.path, "depths", f"non-finite value in map {bad}; expected metres")
            rgb[row:stop] = images
            depth[row:stop] = d[:, None]
            labels[row:stop] = _to_label_ids(raw_labels.transpose(0, 2, 1), lut, source, frames)
            for array in (rgb, depth, labels):  # hand written pages to the OS: memory stays at one chunk
                array.flush()
            kept += frames
        if not kept:
            raise DatasetFormatError(source.path, "skipped", f"all {n} frames are unreadable; nothing to write")
        if skipped:
            stream.keep_rows(len(kept))
            splits = drop_from_splits(splits, kept, source.path)
            protocol += f"; {len(skipped)} unreadable frame(s) skipped, the others renumbered"
        meta = {
            "ignore_index": VOID,
            "modalities": {"rgb": {"shape": [3, h, w], "dtype": "uint8"},
                           "depth": {"shape": [1, h, w], "dtype": "float32", "unit": "m"}},
            "labels": {"shape": [h, w], "dtype": "uint8"},
            "normalization": {
                "rgb": {"mode": "global_per_channel", "min": rgb_min.tolist(), "max": rgb_max.tolist()},
                "depth": {"mode": "per_sample"},
            },
            "label_source": source.label_key if lut is None else "labels + classMapping40 (mapClass)",
            "split_protocol": protocol,
            **skipped.meta(),
            **sources,
        }
        return stream.commit(None, classes, NAME, source.path.name, splits, task="segmentation", extra_meta=meta)


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help=f"{OFFICIAL_FILE} (official) or {RAW_FILE}, or their directory")
    parser.add_argument("--class-mapping", help="classMapping40.mat; required with the raw labelled file")
    parser.add_argument("--chunk", type=int, default=16,
                        help="frames read and written per step (about 7 MB of memory each)")
    add_skip_bad_argument(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    try:
        h5py = _require_h5py()
        if args.split_file:
            path = find_source(args.src)
            with open_mat(h5py, path) as h5:
                if "images" not in h5:
                    raise DatasetFormatError(path, "images", f"dataset missing; the file has {sorted(h5.keys())}")
                num = int(h5["images"].shape[0])
            splits = read_split_file(args.split_file, num, args.split_group)
        else:
            splits = None
        out = convert(args.src, args.out, class_mapping=args.class_mapping, splits=splits,
                      split_group=args.split_group, chunk=args.chunk, force=args.force, split_file=args.split_file,
                      skip_bad=args.skip_bad)
    except (DatasetFormatError, DatasetExistsError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "meta.json").read_text())
    sizes = {k: len(v) for k, v in json.loads((out / "splits.json").read_text()).items()}
    print(f"wrote {out}: rgb {meta['modalities']['rgb']['shape']}, depth {meta['modalities']['depth']['shape']}, "
          f"{len(meta['classes'])} classes (0 = void, ignored), splits {sizes}")
    if meta.get("skipped"):
        print(f"note: skipped {len(meta['skipped'])} unreadable frame(s) (listed in meta.json 'skipped')",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
