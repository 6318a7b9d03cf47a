"""Plackett-Luce distillation (PLD): distillation as a listwise ranking loss.

The teacher defines a ranking of the classes: the true label first, then the other classes by
decreasing teacher logit (π*). The student's Plackett-Luce log-likelihood of that ranking is
weighted per position by the teacher's confidence in the class placed there:

    L = − Σ_k softmax(t/τ)_{π*_k} · ( s_{π*_k} − logsumexp_{j ≥ k} s_{π*_j} ),  mean over the batch.

It replaces cross-entropy (the label's position-1 term plays its role). τ = 1 is the paper's
ImageNet setting (4 on CIFAR). The loss is invariant to adding a constant to the student's logits
and is not zero when student and teacher agree (its minimum is the teacher-weighted entropy of
the ranking).
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_target, check_temperature, empty_loss
from xmodal.models.base import UNLABELLED
from xmodal.registry import MODELS


def teacher_ranking(teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C) class indices: the label first, then the rest by decreasing teacher logit. An unlabelled
    row (target −1) is ranked by the teacher's logits alone."""
    key = teacher_logits.detach().float().clone()
    labelled = target != UNLABELLED
    key[labelled] = key[labelled].scatter(1, target[labelled].view(-1, 1), float("inf"))
    return key.argsort(dim=1, descending=True, stable=True)


def suffix_logsumexp(x: torch.Tensor) -> torch.Tensor:
    """Entry k = logsumexp(x[:, k:]) along dim 1."""
    return torch.logcumsumexp(x.flip(1), dim=1).flip(1)


@MODELS.register_module()
class PLDLoss(nn.Module):
    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = check_temperature("PLDLoss", tau)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("PLDLoss", student_logits, teacher_logits)
        check_target("PLDLoss", target, student_logits.shape[1], student_logits.shape[0], unlabelled=True)
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)
        order = teacher_ranking(teacher_logits, target)
        s = student_logits.float().gather(1, order)
        weights = torch.softmax(teacher_logits.detach().float() / self.tau, dim=1).gather(1, order)
        return -(weights * (s - suffix_logsumexp(s))).sum(1).mean()
