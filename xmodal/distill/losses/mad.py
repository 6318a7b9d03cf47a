"""Modality-aware Gram distillation (MAD): match the batch's cosine-similarity (Gram) matrix of the
student to the teacher's, each sample's row weighted by how uncertain the teacher is about it.

    f̂ = f / ‖f‖₂ (per sample, flattened),  G = f̂ f̂ᵀ  (B × B, for student and teacher alike)
    e_i = (1/B) Σ_j (G_S,ij − G_T,ij)²                         the row's mean squared error
    H_i = −Σ_c p_ic log p_ic,  p_i = softmax(z_T,i / T)        the teacher's predictive entropy
    w_i = H_i / Σ_j H_j        ("entropy", the default)
    L   = Σ_i w_i e_i

With equal entropies the weights are 1/B and L is the plain MSE between the two Gram matrices. The
Gram matrices are B × B whatever the feature widths, so student and teacher need no connector; L is
invariant to scaling either feature (any positive factor per sample), to an orthogonal rotation of
either feature space and to a permutation of the batch, and unchanged by duplicating the batch.

Sources: no official implementation was found. The only public code under this name (a radiology
repository's ``mad_loss_entropy_weighted``) weights the signed row sum of the similarity difference by
the raw entropy, which is unbounded below and so not a loss to minimise; this file keeps its ingredients
(cosine Gram matrices, teacher entropy as the sample weight) with the squared error. Choices made here:
the weights are the entropy *shares* (they sum to 1, so the loss scale does not depend on the number of
classes or the batch size); the diagonal (always 0 for non-zero features) is part of each row's mean;
when every teacher prediction is (numerically) certain, Σ H = 0 and the weights fall back to uniform.
``weighting="confidence"`` (w_i ∝ log C − H_i, the same repository's other variant: trust what the
teacher is sure of) and ``"uniform"`` (plain Gram MSE, no logits needed) are there to compare against.
The weights carry no gradient (the teacher is frozen). Term::

    dict(type="MADLoss", student="embedding", teacher="t.embedding", inputs=dict(teacher_logits="t.logits"))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_temperature, empty_loss
from xmodal.registry import MODELS

WEIGHTINGS = ("entropy", "confidence", "uniform")


def cosine_gram(feat: torch.Tensor) -> torch.Tensor:
    """(B, B) cosine similarities of the flattened rows in fp32 (a zero row gives a zero row and column)."""
    x = F.normalize(feat.flatten(1).float(), p=2, dim=1)
    with torch.autocast(x.device.type, enabled=False):  # under AMP the matmul would otherwise run in bf16/fp16
        return x @ x.t()


def predictive_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B,) entropy of softmax(logits / T) in nats, from log-probabilities (finite at extreme logits)."""
    log_p = F.log_softmax(logits.float() / temperature, dim=1)
    return -(log_p.exp() * log_p).sum(1)


def sample_weights(teacher_logits: torch.Tensor | None, batch: int, weighting: str = "entropy",
                   temperature: float = 1.0) -> torch.Tensor:
    """(B,) non-negative weights summing to 1; uniform when the chosen score is 0 for every sample."""
    if weighting == "uniform":
        return torch.full((batch,), 1.0 / batch)
    entropy = predictive_entropy(teacher_logits.detach(), temperature)
    score = entropy if weighting == "entropy" else (math.log(teacher_logits.shape[1]) - entropy).clamp_min(0)
    total = score.sum()
    tiny = 1e-12 * batch  # below it, all certain (entropy) or all uniform (confidence): nothing to prefer
    return torch.where(total > tiny, score / total.clamp_min(tiny), torch.full_like(score, 1.0 / batch))


@MODELS.register_module()
class MADLoss(nn.Module):
    """``forward(student_feat, teacher_feat, teacher_logits=None)``: features (B, ...) of any widths,
    teacher logits (B, C) (not needed with ``weighting="uniform"``)."""

    def __init__(self, temperature: float = 1.0, weighting: str = "entropy") -> None:
        super().__init__()
        self.temperature = check_temperature("MADLoss", temperature)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"MADLoss: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, weighting={self.weighting!r}"

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor,
                teacher_logits: torch.Tensor | None = None) -> torch.Tensor:
        shapes = f"student {tuple(student_feat.shape)}, teacher {tuple(teacher_feat.shape)}"
        if student_feat.dim() < 2 or teacher_feat.dim() < 2 or student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(f"MADLoss: expected (batch, ...) features with the same batch, got {shapes}")
        b = student_feat.shape[0]
        if b < 1:
            return empty_loss(student_feat)
        if self.weighting != "uniform":
            if teacher_logits is None:
                raise ValueError(f"MADLoss: weighting={self.weighting!r} needs the teacher's logits: "
                                 "inputs=dict(teacher_logits='<teacher>.logits')")
            if teacher_logits.dim() != 2 or teacher_logits.shape[0] != b:
                raise ValueError(f"MADLoss: expected teacher logits of shape ({b}, classes), got "
                                 f"{tuple(teacher_logits.shape)} ({shapes})")
        g_s = cosine_gram(student_feat)
        g_t = cosine_gram(teacher_feat.detach())
        row_error = (g_s - g_t).pow(2).mean(1)
        weights = sample_weights(teacher_logits, b, self.weighting, self.temperature).to(row_error.device)
        return (weights * row_error).sum()
