"""DCD's distillation loss for retrieval (official code raojay7/DCD, ``distillation_loss``).

Per query, the teacher scores the positive and the mined negatives; the ``keep`` − 1 negatives it
scores highest are kept, positive first (the official setting keeps 8: 7 hard negatives). On the
kept scores s (student) and t (teacher):

    MSE term  D = T² · mean((t/T − s/T)²)
    BCE term  N = Σ_i ê_i · BCE_with_logits(s_i, [1, 0, …, 0]),   ê_i = H_i / Σ_j H_j
    L = α·D + (1 − α)·N,      T = 1, α = 0.2

with H_i the entropy of softmax(t_i) (the official code's per-query share of the teacher's
entropy: uncertain queries weigh more). The official code also multiplies the MSE term by
per-query weights that sum to 1 after the MSE has already been averaged to a scalar, so they
change nothing; xmodal leaves them out and says so. It also gathers the teacher's scores in the
teacher's sorted order while the student's follow "positive first, then the others" (they differ
whenever the teacher does not rank the positive first); xmodal aligns both to the same candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import empty_loss
from xmodal.distill.retrieval.cprd import check_candidate_scores
from xmodal.registry import MODELS


def keep_teacher_hardest(student: torch.Tensor, teacher: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns [0 (positive), the keep − 1 negatives with the highest teacher scores]."""
    k = min(keep - 1, teacher.shape[1] - 1)
    negatives = teacher[:, 1:].topk(k, dim=1).indices + 1
    columns = torch.cat([torch.zeros_like(negatives[:, :1]), negatives], dim=1)
    return student.gather(1, columns), teacher.gather(1, columns)


def entropy_share(teacher: torch.Tensor) -> torch.Tensor:
    """H_i / Σ_j H_j of softmax(teacher rows); uniform when every row is certain (Σ H = 0)."""
    log_p = F.log_softmax(teacher, dim=1)
    entropy = -(log_p.exp() * log_p).sum(1)
    total = entropy.sum()
    if float(total) <= 1e-12:
        return torch.full_like(entropy, 1.0 / len(entropy))
    return entropy / total


@MODELS.register_module()
class DCDLoss(nn.Module):
    def __init__(self, temperature: float = 1.0, alpha: float = 0.2, keep: int = 8) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"DCDLoss: temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"DCDLoss: alpha must lie in [0, 1], got {alpha}")
        if keep < 2:
            raise ValueError(f"DCDLoss: keep must be ≥ 2 (the positive and a negative), got {keep}")
        self.temperature, self.alpha, self.keep = float(temperature), float(alpha), int(keep)

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        check_candidate_scores("DCDLoss", student_scores, teacher_scores)
        if student_scores.shape[0] == 0:
            return empty_loss(student_scores)
        s, t = keep_teacher_hardest(student_scores.float(), teacher_scores.detach().float(), self.keep)
        temp = self.temperature
        mse = F.mse_loss(s / temp, t / temp) * temp * temp
        target = torch.zeros_like(s)
        target[:, 0] = 1.0
        bce = F.binary_cross_entropy_with_logits(s, target, reduction="none").mean(1)
        weighted_bce = (entropy_share(t) * bce).sum()
        return self.alpha * mse + (1 - self.alpha) * weighted_bce
