"""Writing a detection dataset: each sample checked with the reader's rules before its files are placed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from xmodal.data.detection.format import (
    CAM_DIR,
    FORMAT_VERSION,
    IMAGE_SUFFIXES,
    LIDAR_DIR,
    OPTIONAL_PER_BOX,
    POINT_COLUMNS,
    POINT_DIMS,
    TABLES,
    BadField,
    first_non_finite,
    is_int,
    is_name,
    parse_sample,
    short,
)
from xmodal.data.manifest import place
from xmodal.data.splits import split_problems
from xmodal.data.writer import DatasetStream, sha256_of


def _image_suffix(content: object, field: str) -> str:
    if isinstance(content, (bytes, bytearray, memoryview)):
        head = bytes(content[:8])
        if head.startswith(b"\x89PNG"):
            return ".png"
        if head.startswith(b"\xff\xd8"):
            return ".jpg"
        raise BadField(field, "image bytes are neither PNG nor JPEG")
    suffix = Path(content).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise BadField(field, f"{content}: expected a {'/'.join(IMAGE_SUFFIXES)} file")
    return ".jpg" if suffix == ".jpeg" else suffix


def _points_of(content: object) -> np.ndarray:
    """The sample's points as a float32 (N, POINT_DIMS) array, read from a file or bytes when not an array."""
    if isinstance(content, (bytes, bytearray, memoryview)) or isinstance(content, (str, Path)):
        raw = (np.frombuffer(bytes(content), dtype="<f4") if isinstance(content, (bytes, bytearray, memoryview))
               else np.fromfile(Path(content).expanduser(), dtype="<f4"))
        if raw.size % POINT_DIMS:
            raise BadField("points", f"{raw.size * 4} bytes is not a multiple of {4 * POINT_DIMS} (float32 x "
                            f"{POINT_DIMS}); wrong column count?")
        content = raw.reshape(-1, POINT_DIMS)
    points = np.asarray(content)
    if points.ndim != 2 or points.shape[1] != POINT_DIMS:
        raise BadField("points", f"shape {list(points.shape)}; expected (N, {POINT_DIMS}) columns {POINT_COLUMNS}")
    points = points.astype("<f4", copy=False)
    problem = first_non_finite(points)
    if problem:
        raise BadField("points", problem)
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
    bad_cam = next((c for c in cameras if not is_name(c)), None)
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
                except BadField as err:
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
        splits = {str(k): [int(i) if is_int(i) else i for i in v] for k, v in splits.items()}
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
        raise BadField("sample", f"expected a mapping, got {type(sample).__name__}")
    token = sample.get("token")
    if not is_name(token):
        raise BadField("token", f"got {short(token)}; expected a non-empty name of letters, digits, '_', '.', '-'")
    if "points" not in sample:
        raise BadField("points", "missing; expected a float32 (N, 5) array or a .bin file")
    points = _points_of(sample["points"])
    cams_in = sample.get("cams") or {}
    if not isinstance(cams_in, Mapping):
        raise BadField("cams", f"expected a mapping camera -> {{image, intrinsics, lidar2cam}}, got {short(cams_in)}")
    files: list[tuple[str, object]] = [(f"{LIDAR_DIR}/{token}.bin", points)]
    cams = {}
    for cam, entry in cams_in.items():
        if cam not in cameras:
            raise BadField(f"cams.{cam}", f"camera not in the dataset's cameras {list(cameras)}")
        if not isinstance(entry, Mapping) or "image" not in entry:
            raise BadField(f"cams.{cam}", "expected {image, intrinsics, lidar2cam}")
        image = entry["image"]
        if not isinstance(image, (bytes, bytearray, memoryview)):
            image = Path(image).expanduser()
            if not image.is_file():
                raise BadField(f"cams.{cam}.image", f"{image}: file missing")
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
    for key in (*OPTIONAL_PER_BOX, "velocity_missing"):
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
        place(Path(content), target, link)
