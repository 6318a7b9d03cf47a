"""Vanilla knowledge distillation (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a
Neural Network"): T² · KL(softmax(t/T) ‖ softmax(s/T)), mean over the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_temperature, empty_loss
from xmodal.registry import MODELS


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            reduction: str = "batchmean") -> torch.Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)) in fp32; gradients reach both sides (detach the teacher to stop
    them). ``reduction``: ``"batchmean"`` (a scalar) or ``"none"`` (one value per sample). Dense logits
    (B, C, H, W) are compared per pixel (softmax over C) and averaged over the pixels, as in MST-Distill's
    segmentation loss."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="none")
    positions = kl[0, 0].numel() if kl.dim() > 2 else 1
    kl = kl.flatten(1).sum(1) if reduction == "none" else kl.sum() / student_logits.shape[0]
    return kl * (t * t / positions)


@MODELS.register_module()
class KDLoss(nn.Module):
    """The T² factor keeps gradient magnitudes comparable across temperatures (Hinton et al. §2).
    Computed in fp32 whatever the input dtype (autocast-safe)."""

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = check_temperature("KDLoss", temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("KDLoss", student_logits, teacher_logits)
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)
        return soft_kl(student_logits, teacher_logits.detach(), self.temperature)
