"""UniDistill's feature loss: L1 between low-level BEV features at the 9 keypoints of each box."""

from __future__ import annotations

import torch

from xmodal.distill.unidistill.keypoints import BoxKeypointLoss, zero_with_graph
from xmodal.registry import MODELS


@MODELS.register_module()
class UniDistillFeatureLoss(BoxKeypointLoss):
    """L1 between student and teacher low-level BEV features at the 9 keypoints of each GT box;
    same channel count needed (give the term a connector otherwise)."""

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, gt_boxes: object,
                labelled: object = None, teacher_heatmap: torch.Tensor | None = None,
                teacher_regression: torch.Tensor | None = None) -> torch.Tensor:
        self._check_pair(student_feat, teacher_feat, same_channels=True)
        sampled = self._sample(student_feat, teacher_feat, gt_boxes, labelled, teacher_heatmap, teacher_regression)
        if sampled is None:
            return zero_with_graph(student_feat)
        s, t, valid = sampled
        per_keypoint = torch.where(valid, (s - t).abs().mean(-1), 0.0)  # mean over channels
        return self._mean_over_boxes(per_keypoint.sum(-1), valid.sum(-1))
