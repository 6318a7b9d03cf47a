"""Box geometry on numpy arrays: corners and point-in-box tests (the LiDAR-frame boxes of the format)."""

from __future__ import annotations

import numpy as np


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
