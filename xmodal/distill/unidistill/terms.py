"""The per-path weights of the official experiments and the Distiller loss terms built from them."""

from __future__ import annotations

from collections.abc import Mapping

# Weights of (feature, relation, response) in the total loss, per teacher → student path, from
# the official experiment files; response = cls + reg.
UNIDISTILL_WEIGHTS: dict[str, dict[str, float]] = {
    "camera_from_lidar": dict(feature=100.0, relation=40.0, response=10.0),
    "camera_from_fusion": dict(feature=10.0, relation=5.0, response=10.0),
    "lidar_from_camera": dict(feature=10.0, relation=5.0, response=1.0),
    "lidar_from_fusion": dict(feature=10.0, relation=1.0, response=10.0),
}


def unidistill_terms(path: str, teacher: str, grid: Mapping, pseudo_score: float | None = None) -> list[dict]:
    """The three Distiller loss terms of one UniDistill path (``"camera_from_lidar"``, ...) with the path's
    weights, for a student and a teacher ``BEVDetector`` on the same ``grid`` (``point_cloud_range``,
    ``cell_size``; every output at the grid's resolution, so stride 1)::

        losses = unidistill_terms("camera_from_lidar", "t_lidar", grid)

    ``pseudo_score``: for training sets with unlabelled scenes (a label budget): their keypoints come from
    the teacher's detections scoring at least this much (not in the paper; docs/bev.md).
    """
    if path not in UNIDISTILL_WEIGHTS:
        raise KeyError(f"unidistill_terms: unknown path {path!r}; expected one of {sorted(UNIDISTILL_WEIGHTS)}")
    weights = UNIDISTILL_WEIGHTS[path]
    where = dict(bev_range=tuple(grid["point_cloud_range"]), cell_size=grid["cell_size"], stride=1)
    boxes = dict(gt_boxes="batch.gt_boxes")
    if pseudo_score is not None:
        where = dict(where, pseudo_score=pseudo_score)
        boxes = dict(boxes, labelled="batch.labelled")
    teacher_maps = dict(teacher_heatmap=f"{teacher}.heatmap", teacher_regression=f"{teacher}.regression") \
        if pseudo_score is not None else {}
    return [
        dict(type="UniDistillFeatureLoss", name="feature", weight=weights["feature"], student="bev_low",
             teacher=f"{teacher}.bev_low", inputs=dict(boxes, **teacher_maps), **where),
        dict(type="UniDistillRelationLoss", name="relation", weight=weights["relation"], student="bev_high",
             teacher=f"{teacher}.bev_high", inputs=dict(boxes, **teacher_maps), **where),
        dict(type="UniDistillResponseLoss", name="response", weight=weights["response"], student="heatmap",
             teacher=f"{teacher}.heatmap", inputs=dict(boxes, student_regression="student.regression",
                                                       teacher_regression=f"{teacher}.regression"), **where),
    ]
