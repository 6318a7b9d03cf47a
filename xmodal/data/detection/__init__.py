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

Frames and boxes follow ``xmodal.models.bev.grid``: the LiDAR frame has x forward, y left, z up
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

from xmodal.data.detection.boxes import box_corners, points_in_boxes
from xmodal.data.detection.dataset import DetectionDataset, detection_collate, resize_intrinsics
from xmodal.data.detection.format import (
    BOX_FIELDS,
    FORMAT_VERSION,
    POINT_COLUMNS,
    POINT_DIMS,
    check_point_file_size,
    parse_sample,
)
from xmodal.data.detection.writer import write_detection_dataset

__all__ = [
    "BOX_FIELDS",
    "FORMAT_VERSION",
    "POINT_COLUMNS",
    "POINT_DIMS",
    "DetectionDataset",
    "box_corners",
    "check_point_file_size",
    "detection_collate",
    "parse_sample",
    "points_in_boxes",
    "resize_intrinsics",
    "write_detection_dataset",
]
