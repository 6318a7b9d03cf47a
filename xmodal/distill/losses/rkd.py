"""Relational knowledge distillation (Park et al., CVPR 2019, "Relational Knowledge Distillation").

Transfers the structure of a batch rather than each sample's output:

* distance: pairwise Euclidean distances, each divided by the mean non-zero distance of its own
  batch, compared with the Huber (smooth L1) loss;
* angle: for every triplet (i, j, k), the cosine of the angle at i between e_j − e_i and e_k − e_i,
  compared with the Huber loss.

``distance_weight`` 1 and ``angle_weight`` 2 are the paper's metric-learning setting (CIFAR
recipes such as mdistiller use 25 and 50). Features are flattened per sample; both terms are
invariant to a translation or a uniform scaling of either embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import empty_loss
from xmodal.registry import MODELS


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances with a zero diagonal and finite gradients for coincident points."""
    with torch.autocast(x.device.type, enabled=False):  # |x|² + |y|² − 2x·y cancels badly in bf16/fp16 (AMP)
        squared = (x.pow(2).sum(1, keepdim=True) + x.pow(2).sum(1) - 2 * x @ x.t()).clamp_min(eps)
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    return squared.sqrt() * off_diagonal


def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(x)
    positive = d[d > 0]
    return d / positive.mean() if positive.numel() else d


def triplet_cosines(x: torch.Tensor) -> torch.Tensor:
    """(B, B, B): entry [i, j, k] = cos of the angle at x_i between x_j − x_i and x_k − x_i."""
    directions = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # [i, j] = unit(x_j − x_i)
    with torch.autocast(x.device.type, enabled=False):  # fp32 under AMP too
        return directions @ directions.transpose(1, 2)


@MODELS.register_module()
class RKDLoss(nn.Module):
    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0) -> None:
        super().__init__()
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        if student_feat.dim() < 2 or teacher_feat.dim() < 2:
            raise ValueError(f"RKDLoss: expected (batch, features...) tensors, got student "
                             f"{tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)}")
        if student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(f"RKDLoss: needs the same batch in both, got student "
                             f"{tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)}")
        if student_feat.shape[0] < 2:  # no pair of samples: no relation to transfer
            return empty_loss(student_feat)
        s = student_feat.flatten(1).float()
        t = teacher_feat.detach().flatten(1).float()
        loss = s.new_zeros(())
        if self.distance_weight:
            loss = loss + self.distance_weight * F.smooth_l1_loss(_normalised_distances(s), _normalised_distances(t))
        if self.angle_weight:
            loss = loss + self.angle_weight * F.smooth_l1_loss(triplet_cosines(s), triplet_cosines(t))
        return loss
