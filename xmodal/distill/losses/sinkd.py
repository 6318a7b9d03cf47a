"""Sinkhorn knowledge distillation (SinKD; Cui, Qin, Gao, Zhang, Xu, Wu, Li, Sun, Zhou, Li, LREC-COLING 2024,
"Sinkhorn Distance Minimization for Knowledge Distillation").

The batch-wise form: the B student distributions and the B teacher distributions are two point clouds,
and the loss is the entropy-regularised transport cost between them:

    p_i = softmax(s_i / T),  q_j = softmax(t_j / T)          (i, j run over the batch)
    W_ij = ‖p_i − q_j‖₁                                     (B × B cost, every student row to every teacher row)
    K = exp(−W / ε);  P = n rounds of (divide the rows by their sums, then the columns by theirs), from K
    L = (1/B) · Σ_ij P_ij · W_ij

Defaults are the official code's (github.com/2018cx/SinKD, ``loss.py``, class ``Sinkhorn``): T = 2, ε = 0.1,
n = 20, the L1 cost, rows normalised first and columns last, gradients through the plan P (nothing is
detached but the teacher). Where xmodal differs:

* The official loss is ``0.001 · Σ P·W``: a sum that grows with the batch, times a fixed scale. Here the sum
  is divided by B, so L = ⟨P/B, W⟩ with P/B a coupling of the two uniform empirical measures (it sums to 1);
  the value stays the same when the batch is duplicated, and the Distiller term's ``weight`` takes the
  place of the 0.001 (official value at batch 16 ≈ 0.016 · L).
* The iterations run in the log domain (same iterates, mathematically): K = exp(−W/ε) underflows once
  W/ε passes ~100 (fp32), which then turns a plain row normalisation into 0/0.
* The official code pairs this term with a KD cross-entropy in its training loop ("kd+sinkhorn":
  (1 − α)·CE + α·KD + β·Sinkhorn, β = 0.8, α and the KD temperature set per task). That is not part of
  this formula: add a ``KDLoss`` term next to this one in the Distiller.

The loss does not use which student row belongs to which teacher row: shuffling either side alone leaves
it unchanged. It is not zero when student and teacher agree (for two samples whose distributions are d
apart in L1 it is d / (1 + exp(d/ε))); it is zero when every row of both is the same distribution.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_temperature, empty_loss
from xmodal.registry import MODELS


def sinkhorn_log_plan(cost: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """log P for the Gibbs kernel exp(−cost/ε) after ``iterations`` rounds of row then column normalisation
    (columns of P sum to 1 exactly, rows to 1 up to convergence). Differentiable in ``cost``."""
    log_p = -cost / epsilon
    for _ in range(iterations):
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True)
    return log_p


@MODELS.register_module()
class SinKDLoss(nn.Module):
    """Batch-wise Sinkhorn distance between student and teacher probabilities. ``target`` is not used."""

    def __init__(self, temperature: float = 2.0, epsilon: float = 0.1, iterations: int = 20) -> None:
        super().__init__()
        self.temperature = check_temperature("SinKDLoss", temperature)
        if not epsilon > 0:
            raise ValueError(f"SinKDLoss: epsilon must be > 0, got {epsilon}")
        if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
            raise ValueError(f"SinKDLoss: iterations must be an integer >= 1, got {iterations}")
        self.epsilon, self.iterations = float(epsilon), int(iterations)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("SinKDLoss", student_logits, teacher_logits)
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)
        p_student = torch.softmax(student_logits.float() / self.temperature, dim=1)
        p_teacher = torch.softmax(teacher_logits.detach().float() / self.temperature, dim=1)
        cost = torch.cdist(p_student, p_teacher, p=1)
        plan = sinkhorn_log_plan(cost, self.epsilon, self.iterations).exp()
        return (plan * cost).sum() / student_logits.shape[0]
