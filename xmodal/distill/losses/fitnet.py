"""FitNets hint loss (Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep Nets").

The student's intermediate feature, mapped to the teacher's width by a regressor (the loss term's
``connector``: ``LinearConnector`` / ``ConvConnector``), is pulled to the teacher's feature (the
hint) by the mean squared error over all elements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import empty_loss
from xmodal.registry import MODELS


@MODELS.register_module()
class FitNetLoss(nn.Module):
    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        if student_feat.shape != teacher_feat.shape:
            raise ValueError(f"FitNetLoss: student feature {tuple(student_feat.shape)} and teacher feature "
                             f"{tuple(teacher_feat.shape)} differ; give the loss term a connector "
                             f"(e.g. dict(type='LinearConnector', in_dim=..., out_dim=...))")
        if student_feat.numel() == 0:
            return empty_loss(student_feat)
        return F.mse_loss(student_feat.float(), teacher_feat.detach().float())
