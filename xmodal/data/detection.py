"""3-D object detection data (LiDAR points, camera images, 3-D boxes) in xmodal's on-disk format.

Layout of a detection dataset directory (``task: "detection"``)::

    meta.json      {"name", "version": "1", "task": "detection", "classes": [...], "source",
                    "counts": {"sample": N, "box": M}, "point_dims": 5, "cameras": ["CAM_FRONT", ...],
                    "sha256": {"samples.jsonl": ..., "splits.json": ...}, ...}
    splits.json    {"train": [sample ids], "val": [...], "test": [...]}
    samples.jsonl  line i: {"id": i, "token", "lidar": "files/lidar/<token>.bin",
                    "cams": {cam: {"file": "files/cams/<token>_<cam>.png", "intrinsics": 3x3, "lidar2cam": 4x4}},
                    "boxes": [[x, y, z, dx, dy, dz, yaw, vx, vy], ...], "labels": [class name per box], optional}
    files/lidar/   float32, N x point_dims: x, y, z, intensity, time lag (s)
    files/cams/    the images (png/jpg)

Frames and boxes follow ``xmodal.distill.unidistill``: the LiDAR frame has x forward, y left, z up
(metres); a box is its centre, ``dx`` the length along its heading, ``dy`` the width, ``dz`` the
height, ``yaw`` counter-clockwise from +x and the velocity (m/s). ``lidar2cam`` maps homogeneous
LiDAR points to the camera frame (x right, y down, z forward); ``intrinsics`` maps camera points to
pixels with pixel centres at integer coordinates (OpenCV's convention, also nuScenes').

Optional per-sample keys: ``num_points`` (LiDAR points inside each box; nuScenes' ``num_lidar_pts``),
``num_radar_points``, ``attributes`` (an attribute name or "" per box), ``velocity_missing`` (indices
of boxes whose velocity is unknown and stored as 0), ``ego_translation`` (ego position in the global
frame at the LiDAR time), ``lidar2ego`` and ``ego2global`` (4x4), ``scene`` and ``timestamp`` (µs).

Everything but the point values is checked when the dataset is opened, so a bad file fails before
training with one :class:`DatasetFormatError` naming the file, the sample (line, id, token) and
the field; NaN/Inf points are found when a point file is loaded. GT boxes outside a model's BEV
grid are not the reader's business (the detection head drops and counts them).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.registry import FUNCTIONS
from torch.utils.data import Dataset

from xmodal.data.errors import DatasetFormatError
from xmodal.data.paired import read_json
from xmodal.data.retrieval import _is_relative, _parse_lines, _place
from xmodal.data.splits import split_problems
from xmodal.data.writer import DatasetStream, sha256_of
from xmodal.registry import DATASETS

FORMAT_VERSION = "1"
POINT_DIMS = 5
POINT_COLUMNS = ("x", "y", "z", "intensity", "time_lag")
BOX_FIELDS = ("x", "y", "z", "dx", "dy", "dz", "yaw", "vx", "vy")
LIDAR_DIR = "files/lidar"
CAM_DIR = "files/cams"
TABLES = ("samples.jsonl", "splits.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# tokens and camera names become file names: no separators, no leading dot
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SINGULAR_TOL = 1e-6  # |det| of lidar2cam's rotation block below this: not a rigid/affine map one can invert
_OPTIONAL_PER_BOX = ("num_points", "num_radar_points", "attributes")
# keys whose values differ in shape between samples: detection_collate keeps them as lists
LIST_KEYS = ("points", "gt_boxes", "gt_labels", "sample_token", "info")


class _BadField(Exception):
    """A sample breaks a rule of the format: ``field`` and ``problem`` for the caller's message."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _numbers(value: object, shape: tuple[int, ...], field: str, what: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (-1: any length), else _BadField."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _BadField(field, f"expected {what}, got {_short(value)}") from None
    if array.ndim != len(shape) or any(s not in (-1, a) for s, a in zip(shape, array.shape, strict=True)):
        raise _BadField(field, f"expected {what}, got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise _BadField(field, f"non-finite value in {_short(value)}; expected finite numbers")
    return array


def _short(value: object, limit: int = 80) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_intrinsics(value: object, field: str) -> np.ndarray:
    k = _numbers(value, (3, 3), field, "a 3x3 matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
    if not (k[1, 0] == k[2, 0] == k[2, 1] == 0 and k[2, 2] == 1) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise _BadField(field, f"got {_short(k)}; expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    return k


def _check_transform(value: object, field: str) -> np.ndarray:
    t = _numbers(value, (4, 4), field, "a 4x4 homogeneous transform")
    if not np.array_equal(t[3], [0.0, 0.0, 0.0, 1.0]):
        raise _BadField(field, f"last row is {t[3].tolist()}; expected [0, 0, 0, 1]")
    det = float(np.linalg.det(t[:3, :3]))
    if not abs(det) > _SINGULAR_TOL:
        raise _BadField(field, f"not invertible: the 3x3 block has determinant {det:.3g}")
    return t


def parse_sample(row: Mapping, class_index: Mapping[str, int], cameras: Sequence[str]) -> dict:
    """One samples.jsonl object (JSON types) checked against the format and turned into arrays:
    ``{"token", "lidar", "cams": {cam: (file, K (3, 3), T (4, 4))}, "boxes" (M, 9) float32,
    "labels" (M,) int64, "info": {optional keys}}``. Raises _BadField naming the field."""
    token = row.get("token")
    if not _is_name(token):
        raise _BadField("token", f"got {_short(token)}; expected a non-empty name of letters, digits, '_', '.', '-' "
                        "(it names the sample's files)")
    lidar = row.get("lidar")
    if not _is_relative(lidar):
        raise _BadField("lidar", f"got {_short(lidar)}; expected a path relative to the dataset root, without '..'")
    cams_raw = row.get("cams")
    if not isinstance(cams_raw, dict):
        raise _BadField("cams", f"got {_short(cams_raw)}; expected an object {{camera: {{file, intrinsics, "
                        "lidar2cam}}}}")
    extra = sorted(set(cams_raw) - set(cameras))
    if extra:
        raise _BadField(f"cams.{extra[0]}", f"camera not listed in meta.json cameras {list(cameras)}")
    cams = {}
    for cam in cameras:
        entry = cams_raw.get(cam)
        if not isinstance(entry, dict) or "intrinsics" not in entry or "lidar2cam" not in entry:
            raise _BadField(f"cams.{cam}", f"calibration missing for camera {cam} (listed in meta.json cameras); "
                            "expected {file, intrinsics, lidar2cam}")
        if not _is_relative(entry.get("file")):
            raise _BadField(f"cams.{cam}.file", f"got {_short(entry.get('file'))}; expected a path relative to "
                            "the dataset root")
        cams[cam] = (entry["file"], _check_intrinsics(entry["intrinsics"], f"cams.{cam}.intrinsics"),
                     _check_transform(entry["lidar2cam"], f"cams.{cam}.lidar2cam"))
    boxes_raw, labels_raw = row.get("boxes"), row.get("labels")
    if not isinstance(boxes_raw, list):
        raise _BadField("boxes", f"got {_short(boxes_raw)}; expected a list of boxes [{', '.join(BOX_FIELDS)}]")
    try:  # one conversion for the whole sample; box by box only to name a bad one
        boxes = np.asarray(boxes_raw, dtype=np.float64).reshape(len(boxes_raw), len(BOX_FIELDS))
    except (TypeError, ValueError):
        boxes = None
    if boxes is None or not np.isfinite(boxes).all() or not (boxes[:, 3:6] > 0).all():
        for k, box in enumerate(boxes_raw):
            if not isinstance(box, list) or len(box) != len(BOX_FIELDS):
                got = f"{len(box)} values" if isinstance(box, list) else _short(box)
                raise _BadField(f"boxes[{k}]", f"got {got}; expected 9 numbers [{', '.join(BOX_FIELDS)}]")
            values = _numbers(box, (len(BOX_FIELDS),), f"boxes[{k}]", "9 numbers")
            if not (values[3:6] > 0).all():
                raise _BadField(f"boxes[{k}]", f"size (dx, dy, dz) = {tuple(box[3:6])}; every side must be positive")
        raise _BadField("boxes", f"got {_short(boxes_raw)}; expected a list of boxes [{', '.join(BOX_FIELDS)}]")
    if not isinstance(labels_raw, list) or len(labels_raw) != len(boxes):
        got = f"{len(labels_raw)} labels" if isinstance(labels_raw, list) else _short(labels_raw)
        raise _BadField("labels", f"got {got}; expected one class name per box ({len(boxes)})")
    labels = np.zeros(len(boxes), dtype=np.int64)
    for k, label in enumerate(labels_raw):
        if not isinstance(label, str) or label not in class_index:
            raise _BadField(f"labels[{k}]", f"unknown label {label!r}; meta.json classes are {list(class_index)}")
        labels[k] = class_index[label]
    return {"token": token, "lidar": lidar, "cams": cams, "boxes": boxes.astype(np.float32), "labels": labels,
            "info": _parse_optional(row, len(boxes))}


def _parse_optional(row: Mapping, num_boxes: int) -> dict:
    info = {}
    for key in _OPTIONAL_PER_BOX:
        if key not in row:
            continue
        values = row[key]
        kind_ok = (lambda v: isinstance(v, str)) if key == "attributes" else (lambda v: _is_int(v) and v >= 0)
        if not isinstance(values, list) or len(values) != num_boxes or not all(kind_ok(v) for v in values):
            what = "a string" if key == "attributes" else "an integer >= 0"
            raise _BadField(key, f"got {_short(values)}; expected {what} per box ({num_boxes})")
        info[key] = list(values)
    if "velocity_missing" in row:
        values = row["velocity_missing"]
        if (not isinstance(values, list) or not all(_is_int(v) and 0 <= v < num_boxes for v in values)
                or len(set(values)) != len(values)):
            raise _BadField("velocity_missing", f"got {_short(values)}; expected distinct box indices in "
                            f"[0, {num_boxes - 1}]")
        info["velocity_missing"] = sorted(values)
    if "ego_translation" in row:
        info["ego_translation"] = _numbers(row["ego_translation"], (3,), "ego_translation", "[x, y, z]").tolist()
    for key in ("lidar2ego", "ego2global"):
        if key in row:
            info[key] = _check_transform(row[key], key).tolist()
    if "scene" in row:
        if not isinstance(row["scene"], str):
            raise _BadField("scene", f"got {_short(row['scene'])}; expected a string")
        info["scene"] = row["scene"]
    if "timestamp" in row:
        if not _is_int(row["timestamp"]):
            raise _BadField("timestamp", f"got {_short(row['timestamp'])}; expected an integer (µs)")
        info["timestamp"] = int(row["timestamp"])
    return info


def check_point_file_size(path: Path, point_dims: int) -> int:
    """The number of points of a float32 point file; its size must be a multiple of a row's bytes."""
    size = path.stat().st_size
    row = 4 * point_dims
    if size % row:
        raise DatasetFormatError(path, "points", f"size {size} bytes is not a multiple of {row} (float32 x "
                                 f"{point_dims} columns {list(POINT_COLUMNS[:point_dims])}); wrong column count?")
    return size // row


def _first_non_finite(points: np.ndarray) -> str | None:
    bad = ~np.isfinite(points)
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    name = POINT_COLUMNS[col] if col < len(POINT_COLUMNS) else f"column {col}"
    return f"non-finite value {points[row, col]} at point {row}, column {col} ({name})"


# -- writing ----------------------------------------------------------------------------------------
def _image_suffix(content: object, field: str) -> str:
    if isinstance(content, (bytes, bytearray, memoryview)):
        head = bytes(content[:8])
        if head.startswith(b"\x89PNG"):
            return ".png"
        if head.startswith(b"\xff\xd8"):
            return ".jpg"
        raise _BadField(field, "image bytes are neither PNG nor JPEG")
    suffix = Path(content).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise _BadField(field, f"{content}: expected a {'/'.join(IMAGE_SUFFIXES)} file")
    return ".jpg" if suffix == ".jpeg" else suffix


def _points_of(content: object) -> np.ndarray:
    """The sample's points as a float32 (N, POINT_DIMS) array, read from a file or bytes when not an array."""
    if isinstance(content, (bytes, bytearray, memoryview)) or isinstance(content, (str, Path)):
        raw = (np.frombuffer(bytes(content), dtype="<f4") if isinstance(content, (bytes, bytearray, memoryview))
               else np.fromfile(Path(content).expanduser(), dtype="<f4"))
        if raw.size % POINT_DIMS:
            raise _BadField("points", f"{raw.size * 4} bytes is not a multiple of {4 * POINT_DIMS} (float32 x "
                            f"{POINT_DIMS}); wrong column count?")
        content = raw.reshape(-1, POINT_DIMS)
    points = np.asarray(content)
    if points.ndim != 2 or points.shape[1] != POINT_DIMS:
        raise _BadField("points", f"shape {list(points.shape)}; expected (N, {POINT_DIMS}) columns {POINT_COLUMNS}")
    points = points.astype("<f4", copy=False)
    problem = _first_non_finite(points)
    if problem:
        raise _BadField("points", problem)
    return points


def _json_matrix(value: object) -> object:
    """Nested lists of floats for JSON; a value that is not numeric is kept for parse_sample to name."""
    try:
        return np.asarray(value, dtype=np.float64).tolist()
    except (TypeError, ValueError):
        return value


def _plain(value: object) -> object:
    return int(value) if isinstance(value, np.integer) else value


def write_detection_dataset(out: str | Path, samples: Iterable[Mapping], splits: Mapping[str, Sequence[int]],
                            classes: Sequence[str], name: str, source: str, cameras: Sequence[str],
                            force: bool = False, extra_meta: Mapping | None = None, link: bool = True) -> Path:
    """Write a detection dataset; returns ``out``.

    Args:
        out: dataset directory; refused when it exists and is not empty, unless ``force``.
        samples: one mapping per sample, in sample-id order (a generator is fine: samples are written
            one at a time): ``token`` (a file-name-safe string, unique), ``points`` (a float32 (N, 5)
            array, or the path or bytes of such a ``.bin`` file), ``cams`` ``{camera: {"image": path
            or PNG/JPEG bytes, "intrinsics": 3x3, "lidar2cam": 4x4}}`` with every camera of
            ``cameras``, ``boxes`` (M, 9), ``labels`` (M class names), and any optional key of the
            format (``num_points``, ``ego_translation``, ...).
        splits: split name -> sample ids (non-empty, disjoint).
        classes: the class names; ``cameras``: the camera names every sample has.
        link: hard-link image files when possible instead of copying them (points are always written
            anew: they are read and checked).
        extra_meta: more ``meta.json`` keys; read after the last sample, so a generator of samples may
            fill in counts it gathers.

    Each sample is checked before its files are placed, the splits before the directory is renamed
    into place; a failure leaves nothing behind.
    """
    classes, cameras = list(classes), list(cameras)
    if not classes or len(set(classes)) != len(classes) or not all(isinstance(c, str) and c for c in classes):
        raise ValueError(f"{name}: classes must be distinct non-empty names, got {classes}")
    bad_cam = next((c for c in cameras if not _is_name(c)), None)
    if bad_cam is not None or len(set(cameras)) != len(cameras):
        raise ValueError(f"{name}: cameras must be distinct file-name-safe names, got {cameras}")
    class_index = {c: i for i, c in enumerate(classes)}
    with DatasetStream(out, force=force) as stream:
        tmp = stream.tmp
        (tmp / LIDAR_DIR).mkdir(parents=True)
        (tmp / CAM_DIR).mkdir(parents=True)
        seen: dict[str, int] = {}
        count = boxes_total = 0
        with open(tmp / "samples.jsonl", "w") as table:
            for i, sample in enumerate(samples):
                token = sample.get("token") if isinstance(sample, Mapping) else None
                try:
                    row, files = _sample_row(i, sample, class_index, cameras)
                except _BadField as err:
                    raise ValueError(f"{name}: sample {i} (token {token!r}): {err.field}: {err.problem}") from None
                if token in seen:
                    raise ValueError(f"{name}: sample {i} (token {token!r}): token: also sample {seen[token]}; "
                                     "tokens must be unique")
                seen[token] = i
                for target, content in files:
                    _put(tmp / target, content, link)
                table.write(json.dumps(row) + "\n")
                count += 1
                boxes_total += len(row["boxes"])
        if not count:
            raise ValueError(f"{name}: no samples")
        splits = {str(k): [int(i) if _is_int(i) else i for i in v] for k, v in splits.items()}
        if not splits:
            raise ValueError(f"{name}: splits: no split given")
        for split, problem in split_problems(splits, count, "sample"):
            raise ValueError(f"{name}: splits: {split}: {problem}")
        (tmp / "splits.json").write_text(json.dumps(splits))
        meta = {
            "name": name,
            "version": FORMAT_VERSION,
            "task": "detection",
            "classes": classes,
            "source": source,
            "counts": {"sample": count, "box": boxes_total},
            "point_dims": POINT_DIMS,
            "cameras": cameras,
            **(extra_meta or {}),
            "sha256": {f: sha256_of(tmp / f) for f in TABLES},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return stream.publish()  # an existing dataset goes only once the new one is in place


def _sample_row(i: int, sample: object, class_index: Mapping[str, int],
                cameras: Sequence[str]) -> tuple[dict, list[tuple[str, object]]]:
    """The samples.jsonl object of one writer input and the files to place ``(relative path, content)``."""
    if not isinstance(sample, Mapping):
        raise _BadField("sample", f"expected a mapping, got {type(sample).__name__}")
    token = sample.get("token")
    if not _is_name(token):
        raise _BadField("token", f"got {_short(token)}; expected a non-empty name of letters, digits, '_', '.', '-'")
    if "points" not in sample:
        raise _BadField("points", "missing; expected a float32 (N, 5) array or a .bin file")
    points = _points_of(sample["points"])
    cams_in = sample.get("cams") or {}
    if not isinstance(cams_in, Mapping):
        raise _BadField("cams", f"expected a mapping camera -> {{image, intrinsics, lidar2cam}}, got {_short(cams_in)}")
    files: list[tuple[str, object]] = [(f"{LIDAR_DIR}/{token}.bin", points)]
    cams = {}
    for cam, entry in cams_in.items():
        if cam not in cameras:
            raise _BadField(f"cams.{cam}", f"camera not in the dataset's cameras {list(cameras)}")
        if not isinstance(entry, Mapping) or "image" not in entry:
            raise _BadField(f"cams.{cam}", "expected {image, intrinsics, lidar2cam}")
        image = entry["image"]
        if not isinstance(image, (bytes, bytearray, memoryview)):
            image = Path(image).expanduser()
            if not image.is_file():
                raise _BadField(f"cams.{cam}.image", f"{image}: file missing")
        file = f"{CAM_DIR}/{token}_{cam}{_image_suffix(image, f'cams.{cam}.image')}"
        files.append((file, image))
        cams[cam] = {"file": file, **{k: _json_matrix(entry[k]) for k in ("intrinsics", "lidar2cam") if k in entry}}
    boxes = sample.get("boxes", [])
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):  # ragged: parse_sample names the box
        array = None
    if array is not None and array.ndim == 2:  # 1e-6 m / rad / (m/s): plenty, and halves the table
        boxes = [[round(float(v), 6) + 0.0 for v in box] for box in array]  # + 0.0: no "-0.0"
    elif array is not None and array.size == 0:
        boxes = []
    labels = sample.get("labels", [])
    row = {"token": token, "lidar": f"{LIDAR_DIR}/{token}.bin", "cams": cams,
           "boxes": ([list(b) if isinstance(b, (tuple, np.ndarray)) else b for b in boxes]
                     if isinstance(boxes, (list, tuple)) else boxes),
           "labels": [_plain(v) for v in labels] if isinstance(labels, (list, tuple, np.ndarray)) else labels}
    for key in (*_OPTIONAL_PER_BOX, "velocity_missing"):
        if key in sample:
            values = sample[key]
            row[key] = [_plain(v) for v in values] if isinstance(values, (list, tuple, np.ndarray)) else values
    for key in ("scene", "timestamp"):
        if key in sample:
            row[key] = _plain(sample[key])
    for key in ("ego_translation", "lidar2ego", "ego2global"):
        if key in sample:
            row[key] = _json_matrix(sample[key])
    parse_sample(row, class_index, cameras)  # the reader's checks, so a written dataset always opens
    return {"id": i, **row}, files


def _put(target: Path, content: object, link: bool) -> None:
    if isinstance(content, np.ndarray):
        content.astype("<f4", copy=False).tofile(target)
    elif isinstance(content, (bytes, bytearray, memoryview)):
        target.write_bytes(bytes(content))
    else:
        _place(Path(content), target, link)


# -- reading ----------------------------------------------------------------------------------------
def _size_pair(image_size: object) -> tuple[int, int] | None:
    if image_size is None:
        return None
    pair = (image_size, image_size) if _is_int(image_size) else tuple(image_size)
    if len(pair) != 2 or not all(_is_int(v) and v > 0 for v in pair):
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
    """

    def __init__(self, data_root: str | Path, split: str = "train", cameras: Sequence[str] | None = None,
                 load_points: bool = True, load_images: bool = True, image_size: int | Sequence[int] | None = None,
                 check_files: bool = True, with_info: bool = False) -> None:
        self.data_root = Path(data_root).expanduser()
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
        if check_files:
            self._check_files()

    # -- validation, one concern per method -------------------------------------------------
    def _read_meta(self) -> dict:
        path = self.data_root / "meta.json"
        meta = read_json(path)
        for key in ("name", "task", "classes", "counts", "point_dims", "cameras"):
            if key not in meta:
                raise DatasetFormatError(path, key, "required key missing")
        if meta["task"] != "detection":
            raise DatasetFormatError(path, "task", f"got {meta['task']!r}; DetectionDataset reads 'detection' "
                                     "datasets")
        classes = meta["classes"]
        if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
                or len(set(classes)) != len(classes)):
            raise DatasetFormatError(path, "classes", f"got {_short(classes)}; expected distinct class names")
        if not isinstance(meta["counts"], dict) or not _is_int(meta["counts"].get("sample")):
            raise DatasetFormatError(path, "counts", f"got {_short(meta['counts'])}; expected {{'sample': N, ...}}")
        if not _is_int(meta["point_dims"]) or meta["point_dims"] < 3:
            raise DatasetFormatError(path, "point_dims", f"got {meta['point_dims']!r}; expected an int >= 3 "
                                     f"(columns {list(POINT_COLUMNS)})")
        cameras = meta["cameras"]
        if not isinstance(cameras, list) or not all(_is_name(c) for c in cameras) or len(set(cameras)) != len(
                cameras):
            raise DatasetFormatError(path, "cameras", f"got {_short(cameras)}; expected distinct camera names")
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
        path = self.data_root / "samples.jsonl"
        if not path.is_file():
            raise DatasetFormatError(path, "file", "missing; expected the samples table of a detection dataset "
                                     "(see docs/data_format.md)")
        rows = _parse_lines(path)
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
            except _BadField as err:
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
        path = self.data_root / "splits.json"
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
                path = self.data_root / sample["lidar"]
                if not path.is_file():
                    raise DatasetFormatError(path, "lidar", f"point file missing ({where}, split {self.split!r})")
                try:
                    check_point_file_size(path, self.point_dims)
                except DatasetFormatError as err:
                    raise DatasetFormatError(path, err.field, f"{err.problem} ({where})") from None
            if self.load_images:
                for cam in self.cameras:
                    path = self.data_root / sample["cams"][cam][0]
                    if not path.is_file():
                        raise DatasetFormatError(path, f"cams.{cam}.file", f"image file missing ({where}, split "
                                                 f"{self.split!r})")

    # -- loading --------------------------------------------------------------------------------
    def points(self, sample_id: int) -> np.ndarray:
        """The (N, point_dims) float32 points of a sample, checked for NaN/Inf."""
        sample = self.samples[sample_id]
        path = self.data_root / sample["lidar"]
        where = f"sample {sample_id}, token {sample['token']!r}"
        if not path.is_file():
            raise DatasetFormatError(path, "lidar", f"point file missing ({where})")
        raw = np.fromfile(path, dtype="<f4")
        if raw.size % self.point_dims:
            raise DatasetFormatError(path, "points", f"size {raw.size * 4} bytes is not a multiple of "
                                     f"{4 * self.point_dims} (float32 x {self.point_dims} columns); wrong column "
                                     f"count? ({where})")
        points = raw.reshape(-1, self.point_dims)
        problem = _first_non_finite(points)
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
                path = self.data_root / file
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
        tables' SHA-256), the split and the loading options."""
        digest = hashlib.sha256()
        for name in ("meta.json", "splits.json"):
            digest.update((self.data_root / name).read_bytes())
        digest.update(repr((self.split, self.cameras, self.load_points, self.load_images, self.image_size,
                            self.with_info)).encode())
        return digest.hexdigest()

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


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(M, 7+) boxes -> (M, 8, 3) corners: bottom face then top face, each (-,-), (-,+), (+,+), (+,-) in
    the box frame (x along the heading), rotated by yaw about z and shifted to the centre."""
    boxes = np.asarray(boxes, dtype=np.float64)
    signs = np.array([[-1, -1, -1], [-1, 1, -1], [1, 1, -1], [1, -1, -1],
                      [-1, -1, 1], [-1, 1, 1], [1, 1, 1], [1, -1, 1]], dtype=np.float64)
    local = 0.5 * signs[None] * boxes[:, None, 3:6]
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * cos - local[..., 1] * sin + boxes[:, None, 0]
    y = local[..., 0] * sin + local[..., 1] * cos + boxes[:, None, 1]
    return np.stack([x, y, local[..., 2] + boxes[:, None, 2]], axis=-1)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(N, M) bool: point n lies inside box m (grown by ``margin`` metres on every side)."""
    points, boxes = np.asarray(points, dtype=np.float64), np.asarray(boxes, dtype=np.float64)
    rel = points[:, None, :3] - boxes[None, :, :3]
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local_x = rel[..., 0] * cos + rel[..., 1] * sin
    local_y = -rel[..., 0] * sin + rel[..., 1] * cos
    half = 0.5 * boxes[:, 3:6] + margin
    return (np.abs(local_x) <= half[:, 0]) & (np.abs(local_y) <= half[:, 1]) & (np.abs(rel[..., 2]) <= half[:, 2])


