"""UniDistill's relation loss: L1 between the keypoint-to-keypoint cosine similarities of each box."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xmodal.distill.unidistill.keypoints import BoxKeypointLoss, zero_with_graph
from xmodal.models.bev.grid import NUSCENES_BEV_RANGE
from xmodal.registry import MODELS


@MODELS.register_module()
class UniDistillRelationLoss(BoxKeypointLoss):
    """L1 between the 9 × 9 cosine-similarity matrices of each box's keypoint features in the
    student's and the teacher's high-level BEV maps (channel counts may differ)."""

    def __init__(self, bev_range: Sequence[float] = NUSCENES_BEV_RANGE, cell_size: float | Sequence[float] = 0.075,
                 stride: int = 8, eps: float = 1e-4, pseudo_score: float = 0.3, pseudo_nms_radius: float = 1.0) -> None:
        super().__init__(bev_range, cell_size, stride, pseudo_score, pseudo_nms_radius)
        # f / (‖f‖ + eps) as in the official code: an all-zero (e.g. post-ReLU) keypoint feature
        # gets zero similarities and a gradient bounded by 1 / eps instead of 1 / 1e-12
        self.eps = float(eps)

    def _relations(self, x: torch.Tensor) -> torch.Tensor:
        unit = x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + self.eps)
        return unit @ unit.transpose(-1, -2)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, gt_boxes: object,
                labelled: object = None, teacher_heatmap: torch.Tensor | None = None,
                teacher_regression: torch.Tensor | None = None) -> torch.Tensor:
        self._check_pair(student_feat, teacher_feat, same_channels=False)
        sampled = self._sample(student_feat, teacher_feat, gt_boxes, labelled, teacher_heatmap, teacher_regression)
        if sampled is None:
            return zero_with_graph(student_feat)
        s, t, valid = sampled
        pairs = valid[..., :, None] & valid[..., None, :]  # (B, M, 9, 9): both keypoints on the map
        diff = torch.where(pairs, (self._relations(s) - self._relations(t)).abs(), 0.0)
        return self._mean_over_boxes(diff.sum((-1, -2)), pairs.sum((-1, -2)))
