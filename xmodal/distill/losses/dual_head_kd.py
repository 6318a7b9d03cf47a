"""Dual-head knowledge distillation's auxiliary-head loss (Yang et al., 2024, "Dual-Head Knowledge
Distillation: Enhancing Logits Utilization with an Auxiliary Head").

Matching logits directly and cross-entropy on one linear head conflict; the student
(``DualHeadClassifier``) gets an auxiliary head that alone takes the logit-matching loss, and is
dropped at inference. The loss compares every class logit with a binary KL:

    d_bc = σ((s_bc − t_bc) / T)
    L    = T² · Σ_{b,c} KL(Bern(½) ‖ Bern(d_bc)) / B
         = T² · Σ_{b,c} [½·softplus(x) + ½·softplus(−x) − log 2] / B,   x = (s − t)/T

It is 0 exactly when s = t, grows like |s − t|/(2T) far away, and is computed through softplus; the
official code clamps d to [1e-8, 1 − 1e-8] instead, which zeroes the gradient for gaps beyond
≈ 18·T. T = 2 (the official loss's default). Term:
``dict(type="DualHeadKDLoss", student="logits_aux", teacher="t.logits")`` next to the usual
cross-entropy on the main head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_temperature, empty_loss
from xmodal.registry import MODELS


@MODELS.register_module()
class DualHeadKDLoss(nn.Module):
    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = check_temperature("DualHeadKDLoss", temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        check_logit_pair("DualHeadKDLoss", student_logits, teacher_logits)
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)
        t = self.temperature
        x = (student_logits.float() - teacher_logits.detach().float()) / t
        per_logit = 0.5 * (F.softplus(x) + F.softplus(-x)) - math.log(2.0)
        return per_logit.sum() / student_logits.shape[0] * t * t
