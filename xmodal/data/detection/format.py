"""The detection format's rules: the constants of the layout and the checks every sample row passes
(by the writer before it writes, by the dataset when it opens)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xmodal.data.manifest import is_relative
from xmodal.errors import DatasetFormatError

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
OPTIONAL_PER_BOX = ("num_points", "num_radar_points", "attributes")



class BadField(Exception):
    """A sample breaks a rule of the format: ``field`` and ``problem`` for the caller's message."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def is_int(value: object) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_name(value: object) -> bool:
    """A file-name-safe token or camera name."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _numbers(value: object, shape: tuple[int, ...], field: str, what: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (-1: any length), else BadField."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadField(field, f"expected {what}, got {short(value)}") from None
    if array.ndim != len(shape) or any(s not in (-1, a) for s, a in zip(shape, array.shape, strict=True)):
        raise BadField(field, f"expected {what}, got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise BadField(field, f"non-finite value in {short(value)}; expected finite numbers")
    return array


def short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_intrinsics(value: object, field: str) -> np.ndarray:
    k = _numbers(value, (3, 3), field, "a 3x3 matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
    if not (k[1, 0] == k[2, 0] == k[2, 1] == 0 and k[2, 2] == 1) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise BadField(field, f"got {short(k)}; expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    return k


def _check_transform(value: object, field: str) -> np.ndarray:
    t = _numbers(value, (4, 4), field, "a 4x4 homogeneous transform")
    if not np.array_equal(t[3], [0.0, 0.0, 0.0, 1.0]):
        raise BadField(field, f"last row is {t[3].tolist()}; expected [0, 0, 0, 1]")
    det = float(np.linalg.det(t[:3, :3]))
    if not abs(det) > _SINGULAR_TOL:
        raise BadField(field, f"not invertible: the 3x3 block has determinant {det:.3g}")
    return t


def parse_sample(row: Mapping, class_index: Mapping[str, int], cameras: Sequence[str]) -> dict:
    """One samples.jsonl object (JSON types) checked against the format and turned into arrays:
    ``{"token", "lidar", "cams": {cam: (file, K (3, 3), T (4, 4))}, "boxes" (M, 9) float32,
    "labels" (M,) int64, "info": {optional keys}}``. Raises BadField naming the field."""
    token = row.get("token")
    if not is_name(token):
        raise BadField("token", f"got {short(token)}; expected a non-empty name of letters, digits, '_', '.', '-' "
                        "(it names the sample's files)")
    lidar = row.get("lidar")
    if not is_relative(lidar):
        raise BadField("lidar", f"got {short(lidar)}; expected a path relative to the dataset root, without '..'")
    cams_raw = row.get("cams")
    if not isinstance(cams_raw, dict):
        raise BadField("cams", f"got {short(cams_raw)}; expected an object {{camera: {{file, intrinsics, "
                        "lidar2cam}}}}")
    extra = sorted(set(cams_raw) - set(cameras))
    if extra:
        raise BadField(f"cams.{extra[0]}", f"camera not listed in meta.json cameras {list(cameras)}")
    cams = {}
    for cam in cameras:
        entry = cams_raw.get(cam)
        if not isinstance(entry, dict) or "intrinsics" not in entry or "lidar2cam" not in entry:
            raise BadField(f"cams.{cam}", f"calibration missing for camera {cam} (listed in meta.json cameras); "
                            "expected {file, intrinsics, lidar2cam}")
        if not is_relative(entry.get("file")):
            raise BadField(f"cams.{cam}.file", f"got {short(entry.get('file'))}; expected a path relative to "
                            "the dataset root")
        cams[cam] = (entry["file"], _check_intrinsics(entry["intrinsics"], f"cams.{cam}.intrinsics"),
                     _check_transform(entry["lidar2cam"], f"cams.{cam}.lidar2cam"))
    boxes_raw, labels_raw = row.get("boxes"), row.get("labels")
    if not isinstance(boxes_raw, list):
        raise BadField("boxes", f"got {short(boxes_raw)}; expected a list of boxes [{', '.join(BOX_FIELDS)}]")
    try:  # one conversion for the whole sample; box by box only to name a bad one
        boxes = np.asarray(boxes_raw, dtype=np.float64).reshape(len(boxes_raw), len(BOX_FIELDS))
    except (TypeError, ValueError):
        boxes = None
    if boxes is None or not np.isfinite(boxes).all() or not (boxes[:, 3:6] > 0).all():
        for k, box in enumerate(boxes_raw):
            if not isinstance(box, list) or len(box) != len(BOX_FIELDS):
                got = f"{len(box)} values" if isinstance(box, list) else short(box)
                raise BadField(f"boxes[{k}]", f"got {got}; expected 9 numbers [{', '.join(BOX_FIELDS)}]")
            values = _numbers(box, (len(BOX_FIELDS),), f"boxes[{k}]", "9 numbers")
            if not (values[3:6] > 0).all():
                raise BadField(f"boxes[{k}]", f"size (dx, dy, dz) = {tuple(box[3:6])}; every side must be positive")
        raise BadField("boxes", f"got {short(boxes_raw)}; expected a list of boxes [{', '.join(BOX_FIELDS)}]")
    if not isinstance(labels_raw, list) or len(labels_raw) != len(boxes):
        got = f"{len(labels_raw)} labels" if isinstance(labels_raw, list) else short(labels_raw)
        raise BadField("labels", f"got {got}; expected one class name per box ({len(boxes)})")
    labels = np.zeros(len(boxes), dtype=np.int64)
    for k, label in enumerate(labels_raw):
        if not isinstance(label, str) or label not in class_index:
            raise BadField(f"labels[{k}]", f"unknown label {label!r}; meta.json classes are {list(class_index)}")
        labels[k] = class_index[label]
    return {"token": token, "lidar": lidar, "cams": cams, "boxes": boxes.astype(np.float32), "labels": labels,
            "info": _parse_optional(row, len(boxes))}


def _parse_optional(row: Mapping, num_boxes: int) -> dict:
    info = {}
    for key in OPTIONAL_PER_BOX:
        if key not in row:
            continue
        values = row[key]
        kind_ok = (lambda v: isinstance(v, str)) if key == "attributes" else (lambda v: is_int(v) and v >= 0)
        if not isinstance(values, list) or len(values) != num_boxes or not all(kind_ok(v) for v in values):
            what = "a string" if key == "attributes" else "an integer >= 0"
            raise BadField(key, f"got {short(values)}; expected {what} per box ({num_boxes})")
        info[key] = list(values)
    if "velocity_missing" in row:
        values = row["velocity_missing"]
        if (not isinstance(values, list) or not all(is_int(v) and 0 <= v < num_boxes for v in values)
                or len(set(values)) != len(values)):
            raise BadField("velocity_missing", f"got {short(values)}; expected distinct box indices in "
                            f"[0, {num_boxes - 1}]")
        info["velocity_missing"] = sorted(values)
    if "ego_translation" in row:
        info["ego_translation"] = _numbers(row["ego_translation"], (3,), "ego_translation", "[x, y, z]").tolist()
    for key in ("lidar2ego", "ego2global"):
        if key in row:
            info[key] = _check_transform(row[key], key).tolist()
    if "scene" in row:
        if not isinstance(row["scene"], str):
            raise BadField("scene", f"got {short(row['scene'])}; expected a string")
        info["scene"] = row["scene"]
    if "timestamp" in row:
        if not is_int(row["timestamp"]):
            raise BadField("timestamp", f"got {short(row['timestamp'])}; expected an integer (µs)")
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


def first_non_finite(points: np.ndarray) -> str | None:
    """Where the first NaN/Inf of a point array is, or None."""
    bad = ~np.isfinite(points)
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    name = POINT_COLUMNS[col] if col < len(POINT_COLUMNS) else f"column {col}"
    return f"non-finite value {points[row, col]} at point {row}, column {col} ({name})"
