"""Contrastive partial ranking distillation (CPRD, arXiv 2407.07479), as xmodal reads it.

The student (a dual encoder) mines its K hardest in-batch negatives for each query; the
cross-encoder teacher scores only those; the student learns the teacher's *order* of them with a
Plackett-Luce (ListMLE) likelihood, next to its ITC loss, in both directions (image→text, text→image):

    π = the K negatives sorted by decreasing teacher score
    L = − Σ_k [ s_{π_k}/τ − logsumexp_{j ≥ k} s_{π_j}/τ ],   mean over queries

Only a partial ranking is learned (the negatives the student finds hard, not the whole gallery),
and the scale of the teacher's scores never enters, only their order. The paper's equations and
settings were not available to us and no official code was found; every choice is a field:
``tau`` (1: the student scores are already its logit-scale × cosine), ``include_positive`` (False:
ITC already ranks the positive first; True puts it at the head of the list).
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.losses.checks import empty_loss
from xmodal.distill.losses.pld import suffix_logsumexp
from xmodal.registry import MODELS


def check_candidate_scores(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 2 or student.shape != teacher.shape or student.shape[1] < 2:
        raise ValueError(f"{loss}: expected student and teacher scores of the same (queries, 1 + negatives) shape "
                         f"with the positive in column 0 and ≥ 1 negative; got student {tuple(student.shape)}, "
                         f"teacher {tuple(teacher.shape)}")


@MODELS.register_module()
class CPRDLoss(nn.Module):
    def __init__(self, tau: float = 1.0, include_positive: bool = False) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"CPRDLoss: tau must be > 0, got {tau}")
        self.tau, self.include_positive = float(tau), bool(include_positive)

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        """Scores (Q, 1 + K) of each query's positive (column 0) and mined negatives."""
        check_candidate_scores("CPRDLoss", student_scores, teacher_scores)
        if student_scores.shape[0] == 0:
            return empty_loss(student_scores)
        s, t = student_scores.float() / self.tau, teacher_scores.detach().float()
        order = t[:, 1:].argsort(dim=1, descending=True, stable=True) + 1
        if self.include_positive:
            order = torch.cat([torch.zeros_like(order[:, :1]), order], dim=1)
        ranked = s.gather(1, order)
        return -(ranked - suffix_logsumexp(ranked)).sum(1).mean()
