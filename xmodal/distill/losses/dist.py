"""DIST (Huang, You, Wang, Qian, Xu, NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher").

Match relations instead of values: the student's probabilities need only be correlated with the teacher's.

    Y_s = softmax(s / τ),  Y_t = softmax(t / τ)                     (B × C)
    ρ(a, b) = Σ (a − ā)(b − b̄) / (‖a − ā‖·‖b − b̄‖ + ε)              (Pearson correlation)
    inter = 1 − mean_i ρ(Y_s[i, :], Y_t[i, :])                      (each sample's distribution over classes)
    intra = 1 − mean_c ρ(Y_s[:, c], Y_t[:, c])                      (each class's column across the batch)
    L = τ² · (β · inter + γ · intra)

Defaults β = γ = 1, τ = 1 (the paper's ImageNet setting; the official CIFAR-100 recipe uses τ = 4 with the
term weighted 2). τ² multiplies both parts, as in the official classification code
(github.com/hunto/image_classification_sota, ``lib/models/losses/dist_kd.py``). ε = 1e-8 is the official
guard, added to the product of the norms: a constant vector (a row of equal logits; a class column when
the batch has one sample, or when every sample gives it the same probability) has correlation 0, so its
part of the mean is 1, and the value stays finite. The gradient there is finite too but scales like 1/ε
through the other side's centred vector: a student whose logits are exactly equal across classes (all-zero
logits) gets a very large first step. Correlation is scale-free, so the loss is 0 when student and
teacher agree (up to ε, and as long as no row or column is constant) and ranges over [0, 2·τ²·(β + γ)].
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_temperature, empty_loss
from xmodal.registry import MODELS


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``; 0 for a constant row."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@MODELS.register_module()
class DISTLoss(nn.Module):
    """Inter-class plus intra-class correlation loss on the probabilities. ``target`` is not used."""

    def __init__(self, tau: float = 1.0, beta: float = 1.0, gamma: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.tau = check_temperature("DISTLoss", tau)
        if not eps > 0:
            raise ValueError(f"DISTLoss: eps must be > 0, got {eps}")
        self.beta, self.gamma, self.eps = float(beta), float(gamma), float(eps)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("DISTLoss", student_logits, teacher_logits)
        if student_logits.shape[1] < 2:
            raise ValueError(f"DISTLoss: needs at least 2 classes, got shape {tuple(student_logits.shape)}")
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)
        y_s = torch.softmax(student_logits.float() / self.tau, dim=1)
        y_t = torch.softmax(teacher_logits.detach().float() / self.tau, dim=1)
        inter = 1 - pearson_rows(y_s, y_t, self.eps).mean()
        intra = 1 - pearson_rows(y_s.t(), y_t.t(), self.eps).mean()
        return self.tau * self.tau * (self.beta * inter + self.gamma * intra)
