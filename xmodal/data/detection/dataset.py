"""Reading a detection dataset: the split's samples as dicts, and the collate function that batches them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.registry import FUNCTIONS
from torch.utils.data import Dataset

from xmodal.data.detection.format import (
    POINT_COLUMNS,
    BadField,
    check_point_file_size,
    first_non_finite,
    is_int,
    is_name,
    parse_sample,
    short,
)
from xmodal.data.labelled import budget_mask, labelled_record, parse_budget, parse_subset, subset_positions
from xmodal.data.manifest import file_identity, inside_root, parse_lines
from xmodal.data.paired import read_json, read_task_meta
from xmodal.data.splits import split_problems
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS

# keys whose values differ in shape between samples: detection_collate keeps them as lists
LIST_KEYS = ("points", "gt_boxes", "gt_labels", "sample_token", "info")


def _size_pair(image_size: object) -> tuple[int, int] | None:
    if image_size is None:
        return None
    pair = (image_size, image_size) if is_int(image_size) else tuple(image_size)
    if len(pair) != 2 or not all(is_int(v) and v > 0 for v in pair):
        raise ValueError(f"DetectionDataset: image_size must be None, a positive int or (height, width), "
                         f"got {image_size!r}")
    return int(pair[0]), int(pair[1])


def resize_intrinsics(k: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics of an image resized by (scale_x, scale_y) with pixel centres at integer coordinates:
    u' = (u + 0.5) * s - 0.5, so fx' = s fx and cx' = (cx + 0.5) s - 0.5."""
    out = np.array(k, dtype=np.float64)
    out[0, :] *= scale_x
    out[1, :] *= scale_y
    out[0, 2] += 0.5 * scale_x - 0.5
    out[1, 2] += 0.5 * scale_y - 0.5
    return out


@DATASETS.register_module()
class DetectionDataset(Dataset):
    """The samples of one split as dicts (see docs/data_format.md, "Detection datasets"):

    ``points`` (N, point_dims) float32, ``images`` (N_cam, 3, H, W) float32 in [0, 1],
    ``intrinsics`` (N_cam, 3, 3) and ``lidar2cam`` (N_cam, 4, 4) float32, ``gt_boxes`` (M, 9) float32,
    ``gt_labels`` (M,) int64 class ids, ``sample_token`` str and ``index`` (the dataset-wide sample
    id, int64). Batch them with ``detection_collate`` (``collate_fn=dict(type="detection_collate")``).

    Args:
        data_root: dataset directory.
        split: a key of ``splits.json``.
        cameras: the cameras to return, in this order; default all of ``meta.json``; ``[]`` none
            (then no ``images``/``intrinsics``/``lidar2cam``).
        load_points: return ``points`` (a camera-only model can skip reading the point files).
        load_images: return ``images`` (the calibration is always returned for the chosen cameras).
        image_size: None (native size; every camera must then have the same size) or ``(H, W)``
            (or one int for square) to resize to (bilinear); ``intrinsics`` follow the resize.
        check_files: check when opening that the split's point files exist with a size that fits
            ``point_dims`` and that the chosen cameras' image files exist.
        with_info: also return ``info``, the sample's optional keys (``num_points``,
            ``ego_translation``, ``attributes``, ...), e.g. for the nuScenes metric's box filters.
        subset: ``dict(part=0, of=2, seed=0)``: only this disjoint part of the split (drawn uniformly).
        labelled: ``dict(fraction=0.1, seed=0)`` or ``dict(ids_file=...)``: the scenes that keep their boxes;
            every item then has a ``labelled`` flag, and an unlabelled scene has no ``gt_boxes``/``gt_labels``
            (docs/label_scarce.md).
        allow_outside_root: read point and image files that resolve (through a symlink) outside ``data_root``.
    """

    def __init__(self, data_root: str | Path, split: str = "train", cameras: Sequence[str] | None = None,
                 load_points: bool = True, load_images: bool = True, image_size: int | Sequence[int] | None = None,
                 check_files: bool = True, with_info: bool = False, subset: dict | None = None,
                 labelled: dict | None = None, allow_outside_root: bool = False) -> None:
        self.data_root = Path(data_root).expanduser()
        self.allow_outside_root = bool(allow_outside_root)
        self.split, self.load_points, self.load_images = split, bool(load_points), bool(load_images)
        self.with_info = bool(with_info)
        self.image_size = _size_pair(image_size)
        if not self.data_root.is_dir():
            raise DatasetFormatError(self.data_root, "data_root", "directory does not exist")
        self.meta = self._read_meta()
        self.classes: list[str] = list(self.meta["classes"])
        self.point_dims: int = int(self.meta["point_dims"])
        self.cameras = self._select_cameras(cameras)
        self.samples = self._read_samples()
        self.sample_ids = self._read_split()
        self.subset = parse_subset(subset, "DetectionDataset.subset")
        self.budget = parse_budget(labelled, split, "DetectionDataset.labelled")
        if self.subset is not None:
            self.sample_ids = self.sample_ids[subset_positions(None, len(self.sample_ids), self.subset)]
        self.labelled_flags = np.ones(len(self.sample_ids), bool) if self.budget is None else \
            budget_mask(None, self.sample_ids, self.budget, "DetectionDataset.labelled")
        if check_files:
            self._check_files()

    # -- validation, one concern per method -------------------------------------------------
    def _read_meta(self) -> dict:
        path, meta = read_task_meta(self.data_root, self.allow_outside_root,
                                    ("name", "task", "classes", "counts", "point_dims", "cameras"), "detection",
                                    "DetectionDataset reads 'detection' datasets")
        classes = meta["classes"]
        if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
                or len(set(classes)) != len(classes)):
            raise DatasetFormatError(path, "classes", f"got {short(classes)}; expected distinct class names")
        if not isinstance(meta["counts"], dict) or not is_int(meta["counts"].get("sample")):
            raise DatasetFormatError(path, "counts", f"got {short(meta['counts'])}; expected {{'sample': N, ...}}")
        if not is_int(meta["point_dims"]) or meta["point_dims"] < 3:
            raise DatasetFormatError(path, "point_dims", f"got {meta['point_dims']!r}; expected an int >= 3 "
                                     f"(columns {list(POINT_COLUMNS)})")
        cameras = meta["cameras"]
        if not isinstance(cameras, list) or not all(is_name(c) for c in cameras) or len(set(cameras)) != len(
                cameras):
            raise DatasetFormatError(path, "cameras", f"got {short(cameras)}; expected distinct camera names")
        return meta

    def _select_cameras(self, cameras: Sequence[str] | None) -> list[str]:
        available = list(self.meta["cameras"])
        if cameras is None:
            return available
        cameras = [cameras] if isinstance(cameras, str) else list(cameras)
        unknown = [c for c in cameras if c not in available]
        if unknown or len(set(cameras)) != len(cameras):
            raise ValueError(f"DetectionDataset: cameras {cameras}: {unknown or 'duplicates'} not valid; the dataset "
                             f"has {available}")
        return cameras

    def _read_samples(self) -> list[dict]:
        path = inside_root(self.data_root, self.data_root / "samples.jsonl", "file", self.allow_outside_root)
        if not path.is_file():
            raise DatasetFormatError(path, "file", "missing; expected the samples table of a detection dataset "
                                     "(see docs/data_format.md)")
        rows = parse_lines(path)
        class_index = {c: i for i, c in enumerate(self.classes)}
        samples, tokens = [], {}
        for position, row in enumerate(rows):
            where = f"line {position + 1}"
            if type(row) is not dict:
                raise DatasetFormatError(path, where, f"expected a JSON object, got {type(row).__name__}")
            if type(row.get("id")) is not int or row["id"] != position:  # type(): True is not an id
                raise DatasetFormatError(path, f"{where}: id", f"got {row.get('id')!r}; expected {position} "
                                         "(ids count 0, 1, 2, ... in line order)")
            where = f"{where} (sample {position}, token {row.get('token')!r})"
            try:
                sample = parse_sample(row, class_index, self.meta["cameras"])
            except BadField as err:
                raise DatasetFormatError(path, f"{where}: {err.field}", err.problem) from None
            if sample["token"] in tokens:
                raise DatasetFormatError(path, f"{where}: token", f"also sample {tokens[sample['token']]}; tokens "
                                         "must be unique")
            tokens[sample["token"]] = position
            samples.append(sample)
        expected = self.meta["counts"]["sample"]
        if len(samples) != expected:
            raise DatasetFormatError(path, "lines", f"{len(samples)} lines but meta.json counts.sample is {expected}")
        return samples

    def _read_split(self) -> np.ndarray:
        path = inside_root(self.data_root, self.data_root / "splits.json", "file", self.allow_outside_root)
        splits = read_json(path)
        if self.split not in splits:
            raise DatasetFormatError(path, self.split, f"split missing; the file has {sorted(splits)}")
        for split, problem in split_problems(splits, len(self.samples), "sample"):
            raise DatasetFormatError(path, split, problem)
        return np.asarray(splits[self.split], dtype=np.int64)

    def _check_files(self) -> None:
        for sid in self.sample_ids.tolist():
            sample = self.samples[sid]
            where = f"sample {sid}, token {sample['token']!r}"
            if self.load_points:
                path = self._file(sample["lidar"], "lidar")
                if not path.is_file():
                    raise DatasetFormatError(path, "lidar", f"point file missing ({where}, split {self.split!r})")
                try:
                    check_point_file_size(path, self.point_dims)
                except DatasetFormatError as err:
                    raise DatasetFormatError(path, err.field, f"{err.problem} ({where})") from None
            if self.load_images:
                for cam in self.cameras:
                    path = self._file(sample["cams"][cam][0], f"cams.{cam}.file")
                    if not path.is_file():
                        raise DatasetFormatError(path, f"cams.{cam}.file", f"image file missing ({where}, split "
                                                 f"{self.split!r})")

    # -- loading --------------------------------------------------------------------------------
    def _file(self, relative: str, field: str) -> Path:
        """A file the samples table names, refused if it resolves outside ``data_root`` (unless allowed)."""
        return inside_root(self.data_root, self.data_root / relative, field, self.allow_outside_root)

    def points(self, sample_id: int) -> np.ndarray:
        """The (N, point_dims) float32 points of a sample, checked for NaN/Inf."""
        sample = self.samples[sample_id]
        path = self._file(sample["lidar"], "lidar")
        where = f"sample {sample_id}, token {sample['token']!r}"
        if not path.is_file():
            raise DatasetFormatError(path, "lidar", f"point file missing ({where})")
        raw = np.fromfile(path, dtype="<f4")
        if raw.size % self.point_dims:
            raise DatasetFormatError(path, "points", f"size {raw.size * 4} bytes is not a multiple of "
                                     f"{4 * self.point_dims} (float32 x {self.point_dims} columns); wrong column "
                                     f"count? ({where})")
        points = raw.reshape(-1, self.point_dims)
        problem = first_non_finite(points)
        if problem:
            raise DatasetFormatError(path, "points", f"{problem} ({where}); expected finite numbers")
        return points

    def _image(self, path: Path, cam: str, sample_id: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """(3, H, W) float32 in [0, 1] (resized to image_size when given) and the native (H, W)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image = image.convert("RGB")  # decodes the whole file: a truncated one fails here
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DatasetFormatError(path, f"cams.{cam}.file", f"not a readable image (sample {sample_id}): "
                                     f"{err}") from err
        native = (image.size[1], image.size[0])
        if self.image_size is not None and native != self.image_size:
            image = image.resize(self.image_size[::-1], Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        return pixels, native

    def _camera_tensors(self, sample_id: int) -> dict[str, torch.Tensor]:
        sample = self.samples[sample_id]
        images, intrinsics, lidar2cam = [], [], []
        for cam in self.cameras:
            file, k, t = sample["cams"][cam]
            if self.load_images or self.image_size is not None:
                path = self._file(file, f"cams.{cam}.file")
                if self.load_images:
                    image, native = self._image(path, cam, sample_id)
                    images.append(image)
                else:  # intrinsics of the resized image still need the native size
                    native = self._native_size(path, sample_id, cam)
                if self.image_size is not None:
                    k = resize_intrinsics(k, self.image_size[1] / native[1], self.image_size[0] / native[0])
            intrinsics.append(k)
            lidar2cam.append(t)
        out = {"intrinsics": torch.from_numpy(np.stack(intrinsics).astype(np.float32)),
               "lidar2cam": torch.from_numpy(np.stack(lidar2cam).astype(np.float32))}
        if self.load_images:
            shapes = {tuple(im.shape[1:]) for im in images}
            if len(shapes) > 1:
                raise DatasetFormatError(self.data_root / sample["lidar"], "cams", f"sample {sample_id}: the cameras' "
                                         f"images have different sizes {sorted(shapes)}; pass image_size=(H, W)")
            out = {"images": torch.stack(images), **out}
        return out

    def _native_size(self, path: Path, sample_id: int, cam: str) -> tuple[int, int]:
        """(H, W) of an image file (reads the header only)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                return image.size[1], image.size[0]
        except (UnidentifiedImageError, OSError) as err:
            raise DatasetFormatError(path, f"cams.{cam}.file", f"not a readable image (sample {sample_id}): "
                                     f"{err}") from err

    # -- dataset protocol ---------------------------------------------------------------------
    @property
    def metainfo(self) -> dict:
        """Read by mmengine (stored in checkpoints); plain JSON types only."""
        return {"name": self.meta["name"], "classes": self.classes, "version": self.meta.get("version"),
                "task": "detection", "cameras": self.cameras, "grid": self.meta.get("grid")}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def stochastic_transforms(self) -> list[str]:
        """No random transforms: an item is the same on every read."""
        return []

    def fingerprint(self) -> str:
        """Identifies what this split yields: the dataset's description (its meta.json holds the
        tables' SHA-256), the size and modification time of the samples table and of the files the
        split reads, the split and the loading options."""
        digest = hashlib.sha256()
        for name in ("meta.json", "splits.json"):
            digest.update((self.data_root / name).read_bytes())
        files = [self.data_root / "samples.jsonl"]
        for sid in self.sample_ids.tolist():
            sample = self.samples[sid]
            files += [self.data_root / sample["lidar"]] if self.load_points else []
            files += [self.data_root / sample["cams"][cam][0] for cam in self.cameras] if self.load_images else []
        digest.update(file_identity([f for f in files if f.is_file()]).encode())
        digest.update(repr((self.split, self.cameras, self.load_points, self.load_images, self.image_size,
                            self.with_info, self.subset, self.budget)).encode())
        return digest.hexdigest()

    @property
    def rows(self) -> np.ndarray:
        """The sample ids of this split (and subset), in position order."""
        return self.sample_ids

    def labelled_record(self) -> dict:
        """What ``labelled_ids.json`` holds: the labelled ids, the budget and the subset."""
        return labelled_record(self)

    def info(self, sample_id: int) -> dict:
        """A sample's optional keys (JSON types), e.g. ``num_points``, ``ego_translation``."""
        return dict(self.samples[sample_id]["info"])

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, position: int) -> dict:
        sample_id = int(self.sample_ids[position])
        sample = self.samples[sample_id]
        item: dict = {}
        if self.load_points:
            item["points"] = torch.from_numpy(self.points(sample_id))
        if self.cameras:
            item.update(self._camera_tensors(sample_id))
        item["gt_boxes"] = torch.from_numpy(sample["boxes"].copy())
        item["gt_labels"] = torch.from_numpy(sample["labels"].copy())
        if self.budget is not None:
            item["labelled"] = torch.tensor(bool(self.labelled_flags[position]))
            if not self.labelled_flags[position]:  # nothing of the hidden boxes may reach the model
                item["gt_boxes"], item["gt_labels"] = item["gt_boxes"][:0], item["gt_labels"][:0]
        item["sample_token"] = sample["token"]
        item["index"] = torch.tensor(sample_id, dtype=torch.long)
        if self.with_info:
            item["info"] = self.info(sample_id)
        return item


@FUNCTIONS.register_module()
def detection_collate(batch: Sequence[Mapping]) -> dict:
    """Batch detection items: ``points``, ``gt_boxes``, ``gt_labels``, ``sample_token`` (and ``info``)
    stay lists of B entries (their sizes differ per sample); every other tensor is stacked
    (``images`` (B, N_cam, 3, H, W), ``intrinsics``, ``lidar2cam``, ``index`` (B,)). Named in
    configs as ``collate_fn=dict(type="detection_collate")``."""
    if not batch:
        raise ValueError("detection_collate: empty batch")
    keys = list(batch[0])
    for k, item in enumerate(batch):
        if set(item) != set(keys):
            raise ValueError(f"detection_collate: item {k} has keys {sorted(item)}, item 0 {sorted(keys)}")
    out: dict = {}
    for key in keys:
        values = [item[key] for item in batch]
        if key in LIST_KEYS or not isinstance(values[0], torch.Tensor):
            out[key] = values
            continue
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            hint = "; give the dataset image_size=(H, W)" if key == "images" else ""
            raise ValueError(f"detection_collate: {key!r} has different shapes in one batch {sorted(shapes)}{hint}")
        out[key] = torch.stack(values)
    return out
