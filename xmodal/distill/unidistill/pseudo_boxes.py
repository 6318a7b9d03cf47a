"""Keypoints for unlabelled scenes: the teacher's own detections stand in for the missing boxes.

UniDistill samples BEV features at the 9 keypoints of every ground-truth box. A scene without labels
(``labelled=False`` from a label budget, docs/label_scarce.md) has no boxes, so its keypoints come from
the teacher's decoded detections with a score of at least ``pseudo_score``. This goes beyond the paper,
whose scenes are all labelled (docs/bev.md).
"""

from __future__ import annotations

import torch

from xmodal.models.bev.centerpoint_head import decode_detections
from xmodal.models.bev.grid import BEVGrid


def keypoint_boxes(where: str, gt_boxes: list[torch.Tensor], labelled: object, teacher_heatmap: object,
                   teacher_regression: object, grid: BEVGrid, score: float, nms_radius: float) -> list[torch.Tensor]:
    """``gt_boxes`` with each unlabelled scene's entry replaced by the teacher's detections (score ≥ ``score``)."""
    if labelled is None:
        return gt_boxes
    flags = torch.as_tensor(labelled, dtype=torch.bool).reshape(-1)
    if len(flags) != len(gt_boxes):
        raise ValueError(f"{where}: labelled has {len(flags)} flags for {len(gt_boxes)} scenes")
    if bool(flags.all()):
        return gt_boxes
    if not isinstance(teacher_heatmap, torch.Tensor) or not isinstance(teacher_regression, torch.Tensor):
        raise ValueError(f"{where}: the batch has unlabelled scenes (labelled=False) and no boxes for them; give the "
                         f"term inputs teacher_heatmap and teacher_regression so the teacher's detections supply "
                         f"the keypoints (unidistill_terms(..., pseudo_score=0.3) does)")
    if tuple(teacher_heatmap.shape[-2:]) != grid.shape:
        raise ValueError(f"{where}: teacher_heatmap {tuple(teacher_heatmap.shape)} is not on the loss grid "
                         f"{grid.shape}")
    radius = torch.full((teacher_heatmap.shape[1],), float(nms_radius))
    missing = (~flags).nonzero().flatten()
    detections = decode_detections(teacher_heatmap[missing], teacher_regression[missing], grid, top_k=100,
                                   score_threshold=score, nms_radius=radius)
    boxes = list(gt_boxes)
    for i, found in zip(missing.tolist(), detections):
        boxes[i] = found["boxes"].to(gt_boxes[i].device if isinstance(gt_boxes[i], torch.Tensor) else "cpu")
    return boxes


def check_pseudo(where: str, score: float, nms_radius: float) -> tuple[float, float]:
    if not 0 <= score < 1:
        raise ValueError(f"{where}: pseudo_score must lie in [0, 1), got {score}")
    if nms_radius < 0:
        raise ValueError(f"{where}: pseudo_nms_radius must be >= 0, got {nms_radius}")
    return float(score), float(nms_radius)
