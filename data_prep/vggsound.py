"""VGGSound-50k (MST-Distill's VGGSound-AVEL 50k subset, 141 classes) -> xmodal's on-disk format.

Input: the precomputed-feature layout MST-Distill's ``get_vggsound`` reads (its preprocessed release,
or the output of its data_preprocess/preprocess_VGGsound50K_0..3.py)::

    <src>/VGGS50k_metadata.txt                     one line per clip: <sample name>&<class id 0..140>
    <src>/VGGS50K_features_normed/visual_features/<name>_vFeature.npy   (10, 7, 7, 512) VGG-19 pool5 maps
    <src>/VGGS50K_features_normed/audio_features/<name>_aFeature.npy    (10, 128) VGGish embeddings
    <src>/seg_labels/<name>_sLabel.npy             per-segment event flags (not needed, see below)

The label is the metadata's class id: the official loader builds a (10, 143) segment-label matrix,
but every model of the recipe is trained on its last column, which is that class id. The sample
order is the metadata's line order, which the official split indices refer to.

``VGGS50K_features_normed`` holds the features after the official global min-max scaling
(preprocess_VGGsound50K_3.py). Given only the raw ``VGGS50K_features``, pass ``--normalize`` to apply
the same scaling (one extra pass to find the global minimum and maximum per modality).

Written: ``visual.npy`` N×10×7×7×512 and ``audio.npy`` N×10×128 (float32, or float16 with
``--dtype float16``: 50 GB of visual features become 25 GB), ``labels.npy``, ``splits.json`` (the
official MST-Distill split by default), ``meta.json``. Samples are streamed into memory-mapped
output files in a temporary directory renamed into place at the end, so memory stays small and an
interrupted run leaves nothing behind.

    python data_prep/vggsound.py --src /path/to/VGGS50K --out data/vggsound
    python data_prep/vggsound.py --src /path/to/VGGS50K --out data/vggsound --dtype float16
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.writer import (  # noqa: E402
    DatasetExistsError,
    DatasetStream,
    add_common_arguments,
    official_splits,
    read_split_file,
    refuse_existing,
)
from xmodal.errors import DatasetFormatError  # noqa: E402

NAME = "vggsound"
METADATA_FILE = "VGGS50k_metadata.txt"
NORMED_DIR = "VGGS50K_features_normed"
RAW_DIR = "VGGS50K_features"
SHAPES = {"visual": (10, 7, 7, 512), "audio": (10, 128)}
SUFFIX = {"visual": ("visual_features", "_vFeature.npy"), "audio": ("audio_features", "_aFeature.npy")}
DTYPES = ("float32", "float16")
# Class ids as assigned by preprocess_VGGsound50K_0.py: the categories of vggsound-avel50k.csv in
# order of first appearance.
CLASSES = (
    "engine accelerating", "playing trumpet", "race car", "orchestra", "lighting firecrackers", "playing violin",
    "playing erhu", "playing bass guitar", "playing snare drum", "cat purring", "playing harp", "people sniggering",
    "child singing", "goose honking", "ice cream truck", "playing bagpipes", "electric shaver", "people booing",
    "driving buses", "train horning", "police car (siren)", "wind noise", "playing clarinet", "people burping",
    "vehicle horn", "playing cymbal", "singing bowl", "playing badminton", "stream burbling", "cap gun shooting",
    "male singing", "vacuum cleaner cleaning floors", "rope skipping", "arc welding", "scuba diving",
    "playing bassoon", "people clapping", "playing harpsichord", "beat boxing", "playing double bass",
    "railroad car", "playing cello", "basketball bounce", "playing tabla", "civil defense siren",
    "pheasant crowing", "playing accordion", "gibbon howling", "playing drum kit", "people marching", "rowboat",
    "tractor digging", "dog barking", "toilet flushing", "cricket chirping", "playing french horn",
    "playing acoustic guitar", "playing banjo", "playing volleyball", "car engine knocking", "female singing",
    "playing mandolin", "bird chirping", "dog howling", "playing squash", "mynah bird singing",
    "machine gun shooting", "airplane flyby", "child speech", "missile launch", "fireworks banging",
    "ambulance siren", "playing marimba", "fire truck siren", "playing cornet", "pigeon", "skateboarding",
    "chainsawing trees", "people screaming", "people crowd", "skidding", "playing saxophone", "playing didgeridoo",
    "playing vibraphone", "playing bongo", "motorboat", "subway", "bowling impact", "playing piano", "dog growling",
    "lions roaring", "planing timber", "skiing", "lawn mowing", "playing electric guitar", "playing sitar",
    "lathe spinning", "playing bass drum", "typing on typewriter", "driving motorcycle", "sharpen knife",
    "people cheering", "ocean burbling", "church bell ringing", "singing choir", "playing electronic organ",
    "horse clip-clop", "people whistling", "playing glockenspiel", "people whispering", "male speech",
    "owl hooting", "frog croaking", "female speech", "playing tambourine", "playing table tennis",
    "printer printing", "roller coaster running", "crow cawing", "police radio chatter", "turkey gobbling",
    "tap dancing", "playing synthesizer", "helicopter", "playing hammond organ", "chicken crowing", "cattle",
    "playing steel guitar", "woodpecker pecking tree", "cattle mooing", "playing trombone", "playing flute",
    "playing ukulele", "volcano explosion", "canary calling", "baby laughter", "playing harmonica", "slot machine",
    "playing theremin", "yodelling", "tapping guitar",
)
assert len(CLASSES) == 141


def find_root(src: str | Path) -> Path:
    """The directory holding ``VGGS50k_metadata.txt``: ``src`` itself or ``src/VGGS50K``."""
    src = Path(src).expanduser()
    if src.is_file() and src.name == METADATA_FILE:
        return src.parent
    for candidate in (src, src / "VGGS50K"):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    if not src.exists():
        raise DatasetFormatError(src, "src", "not found; expected the VGGS50K directory")
    raise DatasetFormatError(src, METADATA_FILE, "file missing; expected the VGGS50K directory with "
                             f"{METADATA_FILE}, {NORMED_DIR}/ and seg_labels/")


def read_metadata(path: Path) -> tuple[list[str], np.ndarray]:
    """Sample names and class ids, in file order (the order the official split indices refer to)."""
    names, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.split("&")
            if len(fields) != 2 or not fields[0]:
                raise DatasetFormatError(path, f"line {number}", f"{line!r}; expected '<sample name>&<class id>'")
            try:
                label = int(fields[1])
            except ValueError:
                raise DatasetFormatError(path, f"line {number}", f"class id {fields[1]!r} is not an integer") from None
            if not 0 <= label < len(CLASSES):
                raise DatasetFormatError(path, f"line {number}", f"class id {label} is outside [0, {len(CLASSES) - 1}]")
            names.append(fields[0])
            labels.append(label)
    if not names:
        raise DatasetFormatError(path, "metadata", "no samples; expected lines '<sample name>&<class id>'")
    return names, np.asarray(labels, dtype=np.int64)


def feature_root(root: Path, features_dir: str | Path | None, normalize: bool) -> Path:
    """Where ``visual_features/`` and ``audio_features/`` are."""
    if features_dir is not None:
        path = Path(features_dir).expanduser()
        path = path if path.is_absolute() else root / path
    elif normalize:
        path = root / RAW_DIR
    elif (root / NORMED_DIR).is_dir():
        path = root / NORMED_DIR
    elif (root / RAW_DIR).is_dir():
        raise DatasetFormatError(root / NORMED_DIR, "features", f"directory missing; {RAW_DIR}/ holds the features "
                                 "before the official min-max scaling: pass --normalize to apply it, or "
                                 f"--features-dir {RAW_DIR} to use them unscaled")
    else:
        raise DatasetFormatError(root / NORMED_DIR, "features", "directory missing; expected "
                                 f"{NORMED_DIR}/visual_features and {NORMED_DIR}/audio_features")
    for folder, _ in SUFFIX.values():
        if not (path / folder).is_dir():
            raise DatasetFormatError(path / folder, "features", "directory missing")
    return path


def load_feature(features: Path, name: str, modality: str, line: int) -> np.ndarray:
    """One sample's feature array, checked for presence, shape, type and finiteness."""
    folder, suffix = SUFFIX[modality]
    path = features / folder / f"{name}{suffix}"
    if not path.is_file():
        raise DatasetFormatError(path, modality, f"file missing (sample '{name}', {METADATA_FILE} line {line})")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFormatError(path, modality, f"not a readable .npy array ({err})") from err
    if array.shape != SHAPES[modality]:
        raise DatasetFormatError(path, modality, f"shape {list(array.shape)}; expected {list(SHAPES[modality])}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DatasetFormatError(path, modality, f"dtype {array.dtype}; expected floating-point features")
    if not np.all(np.isfinite(array)):
        raise DatasetFormatError(path, modality, "non-finite value (NaN/Inf); expected finite features")
    return array


def _global_range(features: Path, names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per-modality minimum and maximum over all samples (the official scaling's constants)."""
    ranges = {}
    for modality in SHAPES:
        low, high = np.inf, -np.inf
        for line, name in enumerate(names, start=1):
            array = load_feature(features, name, modality, line).astype(np.float32)
            low, high = min(low, float(array.min())), max(high, float(array.max()))
        if not high > low:
            raise DatasetFormatError(features / SUFFIX[modality][0], modality,
                                     f"all values equal {low}; min-max scaling needs a range")
        ranges[modality] = (low, high)
    return ranges


def convert(src: str | Path, out: str | Path, features_dir: str | Path | None = None, normalize: bool = False,
            dtype: str = "float32", splits: dict[str, Sequence[int]] | None = None, split_group: int = 0,
            force: bool = False, split_file: str | Path | None = None) -> Path:
    """Convert the VGGS50K feature release at ``src`` into ``out``; returns ``out``.

    ``features_dir``: the folder with ``visual_features/`` and ``audio_features/`` (default
    ``VGGS50K_features_normed``, or ``VGGS50K_features`` with ``normalize``). ``dtype``: "float32"
    or "float16" (half the disk space). ``splits`` defaults to the official split ``split_group``;
    ``split_file``, the file they were read from, is recorded in ``meta.json``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {DTYPES}")
    out = refuse_existing(out, force)
    root = find_root(src)
    names, labels = read_metadata(root / METADATA_FILE)
    features = feature_root(root, features_dir, normalize)
    if splits is None:
        splits = official_splits(len(names), split_group)
        protocol = f"official MST-Distill 60/20/20, group {split_group}"
    else:
        protocol = "given"
    splits = {k: [int(i) for i in v] for k, v in splits.items()}
    ranges = _global_range(features, names) if normalize else None
    sources = provenance([root / METADATA_FILE, split_file], root=root)
    return _write(root, features, names, labels, np.dtype(dtype), ranges, splits, protocol, out, sources)


def _flush(arrays: dict[str, np.memmap]) -> None:
    for array in arrays.values():
        array.flush()


def _write(root: Path, features: Path, names: list[str], labels: np.ndarray, dtype: np.dtype,
           ranges: dict[str, tuple[float, float]] | None, splits: dict[str, list[int]], protocol: str,
           out: Path, sources: dict) -> Path:
    n = len(names)
    limit = float(np.finfo(dtype).max)
    with DatasetStream(out, force=True) as stream:  # convert() has already refused an existing dataset
        arrays = {m: stream.array(m, (n, *shape), dtype) for m, shape in SHAPES.items()}
        for row, name in enumerate(names):
            for modality, target in arrays.items():
                array = load_feature(features, name, modality, row + 1).astype(np.float32)
                if ranges is not None:
                    low, high = ranges[modality]
                    array = (array - low) / (high - low)
                if np.abs(array).max() > limit:  # would become Inf in half precision
                    raise DatasetFormatError(features / SUFFIX[modality][0] / f"{name}{SUFFIX[modality][1]}", modality,
                                             f"values beyond ±{limit:g} do not fit {dtype}; use --dtype float32")
                target[row] = array
            if row % 1024 == 1023:  # hand written pages to the OS so they need not stay in memory
                _flush(arrays)
        meta = {
            "modalities": {
                "visual": {"shape": list(SHAPES["visual"]), "dtype": dtype.name,
                           "layout": "segments x H x W x channels (VGG-19 pool5 per 1 s segment)"},
                "audio": {"shape": list(SHAPES["audio"]), "dtype": dtype.name,
                          "layout": "segments x embedding (VGGish per 1 s segment)"},
            },
            "storage_dtype": dtype.name,
            "precision_note": "stored in half precision (--dtype float16); the models compute in float32"
            if dtype == np.float16 else "float32, as the official loader uses",
            "normalization": {"mode": "global min-max per modality (preprocess_VGGsound50K_3.py)",
                              "applied_by": "converter" if ranges else f"source ({features.name})",
                              **({"range": {m: list(r) for m, r in ranges.items()}} if ranges else {})},
            "sample_names": "sample_names.txt",
            "label_source": f"class id of {METADATA_FILE} (the official loader's target[:, 0, -1])",
            "split_protocol": protocol,
            **sources,
        }
        return stream.commit(labels, CLASSES, NAME, f"{root.name}/{METADATA_FILE} + {features.name}/", splits,
                             extra_meta=meta, extra_files={"sample_names.txt": "\n".join(names) + "\n"})


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help=f"the VGGS50K directory (with {METADATA_FILE})")
    parser.add_argument("--features-dir", help=f"folder with visual_features/ and audio_features/, relative to "
                        f"--src or absolute (default {NORMED_DIR})")
    parser.add_argument("--normalize", action="store_true", help=f"apply the official global min-max scaling "
                        f"(for the unscaled {RAW_DIR})")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="storage precision; float16 halves the ~50 GB of visual features")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    try:
        splits = None
        if args.split_file:
            names, _ = read_metadata(find_root(args.src) / METADATA_FILE)
            splits = read_split_file(args.split_file, len(names), args.split_group)
        out = convert(args.src, args.out, features_dir=args.features_dir, normalize=args.normalize,
                      dtype=args.dtype, splits=splits, split_group=args.split_group, force=args.force,
                      split_file=args.split_file)
    except (DatasetFormatError, DatasetExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "meta.json").read_text())
    sizes = {k: len(v) for k, v in json.loads((out / "splits.json").read_text()).items()}
    num = len(np.load(out / "labels.npy", mmap_mode="r"))
    print(f"wrote {out}: {num} samples, visual {meta['modalities']['visual']['shape']}, "
          f"audio {meta['modalities']['audio']['shape']} ({args.dtype}), {len(meta['classes'])} classes, "
          f"splits {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
