"""Image-caption retrieval data in xmodal's on-disk format: writer and reader.

Layout of a retrieval dataset directory (``task: "retrieval"``)::

    meta.json     {"name", "version": "1", "task": "retrieval", "classes": [], "source",
                   "counts": {"image": N, "text": M}, "sha256": {file: hex}, ...}
    splits.json   {"train": [image ids], "val": [...], "test": [...]}     splits are over images
    image.jsonl   line i: {"id": i, "file": "files/images/<name>"}       relative to the dataset root
    text.jsonl    line j: {"id": j, "image": <image id>, "caption": "..."}
    files/images/ the image files (jpg/png), copied or hard-linked from the source

An image has one or more captions (Flickr30K five, COCO five to seven); a caption belongs to one
image. Everything is checked when the dataset is opened, so a bad file fails before training with
one :class:`DatasetFormatError` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from xmodal.data.manifest import file_identity, inside_root, is_relative, parse_lines, place
from xmodal.data.paired import read_json, read_task_meta
from xmodal.data.splits import split_problems
from xmodal.data.writer import DatasetStream, sha256_of
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS

FORMAT_VERSION = "1"
IMAGE_DIR = "files/images"
MODES = ("pairs", "images", "captions")
TABLES = ("image.jsonl", "text.jsonl", "splits.json")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value: object) -> object:
    """NumPy integers as ``int``; anything else unchanged (and refused later if not an int)."""
    return int(value) if isinstance(value, np.integer) else value


def _relative_name(name: object) -> PurePosixPath | None:
    """``name`` as a relative POSIX path that stays inside its folder, else None."""
    if not is_relative(name):
        return None
    return PurePosixPath(name)


def _caption_check(captioned: np.ndarray):
    return lambda image: None if captioned[image] else "has no caption in text.jsonl"


# -- writing ----------------------------------------------------------------------------------------
def write_retrieval_dataset(out: str | Path, images: Iterable[tuple[str, str | Path | bytes]],
                            captions: Sequence[tuple[int, str]], splits: Mapping[str, Sequence[int]], name: str,
                            source: str, force: bool = False, extra_meta: Mapping | None = None,
                            link: bool = True) -> Path:
    """Write a retrieval dataset; returns ``out``.

    Args:
        out: dataset directory; refused when it exists and is not empty, unless ``force``.
        images: ``(file name, source path or bytes)`` per image, in image-id order. The file is
            stored as ``files/images/<file name>`` (a relative name; sub-folders allowed).
        captions: ``(image id, caption)`` per caption, in caption-id order.
        splits: split name -> image ids.
        link: hard-link source files when possible instead of copying them.

    Tables and splits are checked before any file is placed; files go into a temporary directory
    beside ``out`` renamed into place at the end, so a failure leaves nothing behind.
    """
    with DatasetStream(out, force=force) as stream:
        images = [(file, content) for file, content in images]
        names = _check_images(images, name)
        rows = _check_captions(captions, len(images), name)
        captioned = np.zeros(len(images), dtype=bool)
        captioned[[image for image, _ in rows]] = True
        splits = {str(k): [_as_int(i) for i in v] for k, v in splits.items()}
        for split, problem in split_problems(splits, len(images), "image", _caption_check(captioned)):
            raise ValueError(f"{name}: splits: {split}: {problem}")

        folder = stream.tmp / IMAGE_DIR
        for i, ((file, content), rel) in enumerate(zip(images, names, strict=True)):
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, (bytes, bytearray, memoryview)):
                target.write_bytes(bytes(content))
                continue
            path = Path(content).expanduser()
            if not path.is_file():
                raise DatasetFormatError(path, "image", f"file missing (image {i}, {file!r})")
            place(path, target, link)

        tmp = stream.tmp
        with open(tmp / "image.jsonl", "w") as fh:
            fh.writelines(json.dumps({"id": i, "file": f"{IMAGE_DIR}/{rel}"}) + "\n" for i, rel in enumerate(names))
        with open(tmp / "text.jsonl", "w") as fh:
            fh.writelines(json.dumps({"id": j, "image": image, "caption": text}) + "\n"
                          for j, (image, text) in enumerate(rows))
        (tmp / "splits.json").write_text(json.dumps({k: [int(i) for i in v] for k, v in splits.items()}))
        meta = {
            "name": name,
            "version": FORMAT_VERSION,
            "task": "retrieval",
            "classes": [],
            "source": source,
            "counts": {"image": len(images), "text": len(rows)},
            **(extra_meta or {}),
            "sha256": {f: sha256_of(tmp / f) for f in TABLES},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return stream.publish()  # an existing dataset goes only once the new one is in place


def _check_images(images: list, name: str) -> list[PurePosixPath]:
    names, seen = [], set()
    for i, (file, _) in enumerate(images):
        rel = _relative_name(file)
        if rel is None:
            raise ValueError(f"{name}: image {i}: file name {file!r} must be a relative path without '..'")
        if rel in seen:
            raise ValueError(f"{name}: image {i}: file name {file!r} is used twice; image files need unique names")
        seen.add(rel)
        names.append(rel)
    if not names:
        raise ValueError(f"{name}: no images")
    return names


def _check_captions(captions: Sequence[tuple[int, str]], num_images: int, name: str) -> list[tuple[int, str]]:
    rows = []
    for j, (image, text) in enumerate(captions):
        image = _as_int(image)
        if not _is_int(image) or not 0 <= image < num_images:
            raise ValueError(f"{name}: caption {j}: image id {image!r} is outside [0, {num_images - 1}]")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name}: caption {j} (image {image}): expected a non-empty string, got {text!r}")
        rows.append((int(image), text))
    return rows


# -- reading ----------------------------------------------------------------------------------------
def load_image(path: str | Path, size: int) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1]: RGB, shorter side resized to ``size`` (bicubic), centre crop,
    as CLIP's evaluation preprocessing (its mean/std normalisation is left to the model)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")  # decodes the whole file: a truncated one fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetFormatError(path, "image", f"not a readable image ({err})") from err
    image = TF.center_crop(TF.resize(image, size, interpolation=InterpolationMode.BICUBIC), size)
    return TF.pil_to_tensor(image).float().div_(255.0)


def _read_jsonl(path: Path, keys: dict[str, type]) -> list[dict]:
    """The lines of ``path`` as objects with integer ``id`` equal to the line's position and ``keys``."""
    rows = parse_lines(path)
    for position, row in enumerate(rows):
        if type(row) is not dict:
            raise DatasetFormatError(path, f"line {position + 1}", f"expected a JSON object, got {type(row).__name__}")
        if type(row.get("id")) is not int or row["id"] != position:  # type(): True is not an id
            raise DatasetFormatError(path, f"line {position + 1}: id", f"got {row.get('id')!r}; expected {position} "
                                     "(ids count 0, 1, 2, ... in line order)")
        for key, kind in keys.items():
            if type(row.get(key)) is not kind:
                raise DatasetFormatError(path, f"line {position + 1}: {key}", f"got {row.get(key)!r}; expected a "
                                         f"{kind.__name__}")
    return rows


@DATASETS.register_module()
class RetrievalDataset(Dataset):
    """The images and captions of one split.

    ``mode="pairs"``: one item per caption of the split's images, ``{"image": (3, S, S) float32 in
    [0, 1], "text": str, "index": caption id, "image_index": image id}`` (training, and evaluation of
    models that score a pair at once). ``mode="images"``: one item per image, ``{"image",
    "image_index"}``; ``mode="captions"``: one per caption, ``{"text", "index", "image_index"}`` (the
    two galleries of a retrieval evaluation). Order: images as listed in ``splits.json``, an image's
    captions by id. Ids are dataset-wide (``RetrievalMetric`` keys records by them).

    Args:
        data_root: dataset directory.
        split: a key of ``splits.json``.
        mode: ``"pairs"``, ``"images"`` or ``"captions"``.
        image_size: side S of the square images returned.
        check_files: check when opening that every image file of the split exists (modes that read images).
        allow_outside_root: read image files that resolve (through a symlink) outside ``data_root``.
    """

    def __init__(self, data_root: str | Path, split: str = "train", mode: str = "pairs", image_size: int = 224,
                 check_files: bool = True, allow_outside_root: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"RetrievalDataset: mode {mode!r}; expected one of {MODES}")
        if not _is_int(image_size) or image_size <= 0:
            raise ValueError(f"RetrievalDataset: image_size must be a positive int, got {image_size!r}")
        self.data_root = Path(data_root).expanduser()
        self.split, self.mode, self.image_size = split, mode, image_size
        self.allow_outside_root = bool(allow_outside_root)
        if not self.data_root.is_dir():
            raise DatasetFormatError(self.data_root, "data_root", "directory does not exist")
        self.meta = self._read_meta()
        self.files = self._read_images()
        self.captions, self.caption_image = self._read_captions()
        self.image_ids = self._read_split()
        if check_files and mode != "captions":  # captions mode never opens an image
            self._check_files()
        order = np.argsort(self.caption_image, kind="stable")  # caption ids grouped by image, by id within
        starts = np.searchsorted(self.caption_image[order], self.image_ids)
        ends = np.searchsorted(self.caption_image[order], self.image_ids, side="right")
        self.caption_ids = np.concatenate([order[s:e] for s, e in zip(starts, ends, strict=True)]).astype(np.int64)

    # -- validation, one concern per method -------------------------------------------------
    def _read_meta(self) -> dict:
        path, meta = read_task_meta(self.data_root, self.allow_outside_root, ("name", "task", "counts"), "retrieval",
                                    "RetrievalDataset reads 'retrieval' datasets (use PairedDataset for the others)")
        counts = meta["counts"]
        if not isinstance(counts, dict) or not all(_is_int(counts.get(k)) for k in ("image", "text")):
            raise DatasetFormatError(path, "counts", f"got {counts!r}; expected {{'image': N, 'text': M}}")
        return meta

    def _read_images(self) -> list[str]:
        path = inside_root(self.data_root, self.data_root / "image.jsonl", "file", self.allow_outside_root)
        rows = _read_jsonl(path, {"file": str})
        for row in rows:
            if not is_relative(row["file"]):
                raise DatasetFormatError(path, f"line {row['id'] + 1}: file", f"{row['file']!r} must be a path "
                                         "relative to the dataset root, without '..'")
        self._check_count(path, "image", len(rows))
        return [row["file"] for row in rows]

    def _read_captions(self) -> tuple[list[str], np.ndarray]:
        path = inside_root(self.data_root, self.data_root / "text.jsonl", "file", self.allow_outside_root)
        rows = _read_jsonl(path, {"image": int, "caption": str})
        n = len(self.files)
        # Python ints of any size: a huge id must not overflow into range in an int64 array
        outside = next((row for row in rows if not 0 <= row["image"] < n), None)
        if outside is not None:
            raise DatasetFormatError(path, f"line {outside['id'] + 1}: image", f"image id {outside['image']} is "
                                     f"outside [0, {n - 1}] (image.jsonl has {n} images)")
        captions = [row["caption"] for row in rows]
        empty = next((j for j, text in enumerate(captions) if not text.strip()), None)
        if empty is not None:
            raise DatasetFormatError(path, f"line {empty + 1}: caption", "empty caption")
        self._check_count(path, "text", len(rows))
        return captions, np.fromiter((row["image"] for row in rows), dtype=np.int64, count=len(rows))

    def _check_count(self, path: Path, key: str, lines: int) -> None:
        expected = self.meta["counts"][key]
        if lines != expected:
            raise DatasetFormatError(path, "lines", f"{lines} lines but meta.json counts.{key} is {expected}")

    def _read_split(self) -> np.ndarray:
        path = inside_root(self.data_root, self.data_root / "splits.json", "file", self.allow_outside_root)
        splits = read_json(path)
        if self.split not in splits:
            raise DatasetFormatError(path, self.split, f"split missing; the file has {sorted(splits)}")
        captioned = np.zeros(len(self.files), dtype=bool)
        captioned[self.caption_image] = True
        for split, problem in split_problems(splits, len(self.files), "image", _caption_check(captioned)):
            raise DatasetFormatError(path, split, problem)
        return np.asarray(splits[self.split], dtype=np.int64)

    def _check_files(self) -> None:
        for image in self.image_ids.tolist():
            path = self._image_path(image)
            if not path.is_file():
                raise DatasetFormatError(path, "file", f"image file missing (image.jsonl line {image + 1}, "
                                         f"image id {image}, split {self.split!r})")

    # -- dataset protocol ---------------------------------------------------------------------
    @property
    def metainfo(self) -> dict:
        """Read by mmengine (stored in checkpoints); plain JSON types only."""
        return {"name": self.meta["name"], "classes": self.meta.get("classes") or [],
                "version": self.meta.get("version"), "task": "retrieval"}

    @property
    def stochastic_transforms(self) -> list[str]:
        """No random transforms: an item is the same on every read."""
        return []

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.caption_ids)

    def fingerprint(self) -> str:
        """Identifies what this split yields: the dataset's description (its meta.json holds the
        tables' SHA-256), the tables' and the split's image files' size and modification time, the
        split, the mode and the image size."""
        digest = hashlib.sha256()
        for name in ("meta.json", "splits.json"):
            digest.update((self.data_root / name).read_bytes())
        files = [self.data_root / name for name in TABLES]
        if self.mode != "captions":
            files += [self.data_root / self.files[i] for i in self.image_ids.tolist()]
        digest.update(file_identity(files).encode())
        digest.update(repr((self.split, self.mode, self.image_size)).encode())
        return digest.hexdigest()

    def _image_path(self, image_id: int) -> Path:
        return inside_root(self.data_root, self.data_root / self.files[image_id],
                           f"image.jsonl line {image_id + 1}: file", self.allow_outside_root)

    def image(self, image_id: int) -> torch.Tensor:
        return load_image(self._image_path(image_id), self.image_size)

    def __len__(self) -> int:
        return len(self.image_ids) if self.mode == "images" else len(self.caption_ids)

    def __getitem__(self, position: int) -> dict:
        if self.mode == "images":
            image_id = int(self.image_ids[position])
            return {"image": self.image(image_id), "image_index": torch.tensor(image_id, dtype=torch.long)}
        caption_id = int(self.caption_ids[position])
        image_id = int(self.caption_image[caption_id])
        item = {"text": self.captions[caption_id], "index": torch.tensor(caption_id, dtype=torch.long),
                "image_index": torch.tensor(image_id, dtype=torch.long)}
        if self.mode == "pairs":
            item = {"image": self.image(image_id), **item}
        return item
