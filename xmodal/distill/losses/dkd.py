"""Decoupled knowledge distillation (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation").

KD's KL splits into a target-class part and a non-target part; DKD weights them separately:

    TCKD = T²·KL([p_t^gt, 1 − p_t^gt] ‖ [p_s^gt, 1 − p_s^gt])        (binary: target vs the rest)
    NCKD = T²·KL(p̂_t ‖ p̂_s),  p̂ = softmax over the non-target classes only
    DKD  = α·TCKD + β·NCKD   (paper's main setting α = 1, β = 8, T = 4; mean over the batch)

The paper also ramps the loss up over the first 20 epochs; that schedule is not part of the
formula here: ``DistillWeightWarmupHook`` scales the term's weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_target, check_temperature, empty_loss
from xmodal.models.base import UNLABELLED
from xmodal.registry import MODELS


def _split(logits: torch.Tensor, target: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """log of the binary (target, rest) distribution and log-softmax over the non-target classes,
    both computed from logsumexps (no log of a probability that may underflow to 0)."""
    z = logits.float() / t
    b, c = z.shape
    is_target = F.one_hot(target, c).bool()
    z_target = z[is_target].view(b, 1)
    z_rest = z[~is_target].view(b, c - 1)
    log_all = torch.logsumexp(z, dim=1, keepdim=True)
    log_rest = torch.logsumexp(z_rest, dim=1, keepdim=True)
    binary = torch.cat([z_target - log_all, log_rest - log_all], dim=1)
    return binary, z_rest - log_rest


@MODELS.register_module()
class DKDLoss(nn.Module):
    def __init__(self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0) -> None:
        super().__init__()
        self.temperature = check_temperature("DKDLoss", temperature)
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("DKDLoss", student_logits, teacher_logits)
        check_target("DKDLoss", target, student_logits.shape[1], student_logits.shape[0], unlabelled=True)
        if student_logits.shape[1] < 2:
            raise ValueError("DKDLoss: needs at least 2 classes")
        # both parts split the classes at the label: an unlabelled row (-1) has nothing to split, so only
        # labelled rows count, and the mean is over them
        labelled = target != UNLABELLED
        if not bool(labelled.all()):
            student_logits, teacher_logits = student_logits[labelled], teacher_logits[labelled]
            target = target[labelled]
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)
        t = self.temperature
        s_bin, s_rest = _split(student_logits, target, t)
        t_bin, t_rest = _split(teacher_logits.detach(), target, t)
        n = student_logits.shape[0]
        tckd = F.kl_div(s_bin, t_bin, log_target=True, reduction="sum") / n
        nckd = F.kl_div(s_rest, t_rest, log_target=True, reduction="sum") / n
        return (self.alpha * tckd + self.beta * nckd) * t * t
