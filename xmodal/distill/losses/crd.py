"""Contrastive representation distillation (Tian, Krishnan, Isola, ICLR 2020, "Contrastive
Representation Distillation").

Student and teacher features (flattened per sample) are mapped by linear heads to ``feat_dim`` and
L2-normalised: s = norm(W_s·f_s), t = norm(W_t·f_t). Two memory banks of ``num_data`` × ``feat_dim``
hold a running student embedding and a running teacher embedding for every training sample. For a
sample i with K negative indices j_1..j_K (drawn uniformly from [0, num_data), with replacement):

    P(a, v)  = exp(a·v / T) / Z                 a: the anchor, v: a bank row
    c        = K / N                            K negatives, noise distribution Pn = 1/N, N = num_data
    nce(a, bank) = −log(P(a, bank[i]) / (P(a, bank[i]) + c + eps))
                   − Σ_k log(c / (P(a, bank[j_k]) + c + eps))
    L = mean_i [ nce(s_i, teacher bank) + nce(t_i, student bank) ]

Z (one per direction) is estimated once, from the first batch: N · mean of exp(a·v / T) over the
batch's positive and negative scores, then kept fixed (a buffer, saved in checkpoints). After the
scores, in training mode only, bank[i] ← norm(momentum · bank[i] + (1 − momentum) · embedding_i)
for both banks. Banks start uniform in ±1/sqrt(feat_dim/3) (unnormalised, norm ≈ 1), eps = 1e-7.

Defaults are the official RepDistiller CIFAR-100 settings: feat_dim 128, 16384 negatives,
temperature 0.07, momentum 0.5 (the README trains with weight 0.8 next to cross-entropy). The
official CIFAR scripts pass class-aware negatives from the data loader (other classes only); this
loss samples uniformly over the whole bank, the memory module's own default, unless ``forward``
gets explicit ``negatives`` (e.g. ``inputs=dict(index="batch.index", negatives="batch.contrast_index")``
from a dataset that provides them). The heads are trained with the student. Term::

    dict(type="CRDLoss", student="embedding", teacher="t.embedding", student_dim=84, teacher_dim=128,
         num_data=len(train_set), inputs=dict(index="batch.index"))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_temperature, empty_loss
from xmodal.registry import MODELS

EPS = 1e-7  # the official criterion's eps in the NCE denominators


def nce_loss(log_p: torch.Tensor, num_data: int, eps: float = EPS) -> torch.Tensor:
    """NCE loss from log P (B, 1 + K), the positive in column 0: −(Σ log D1 + Σ log D0) / B with
    D1 = P / (P + K/N + eps) and D0 = (K/N) / (P + K/N + eps), evaluated in log space."""
    k = log_p.shape[1] - 1
    noise = k / num_data
    log_den = torch.logaddexp(log_p, log_p.new_tensor(math.log(noise + eps)))
    log_d1 = log_p[:, 0] - log_den[:, 0]
    log_d0 = math.log(noise) - log_den[:, 1:]
    return -(log_d1.sum() + log_d0.sum()) / log_p.shape[0]


@MODELS.register_module()
class CRDLoss(nn.Module):
    """``forward(student_feat, teacher_feat, index, negatives=None)``; ``index`` (B,) are the samples'
    positions in the training set, ``negatives`` (B, num_negatives) optional explicit negative indices."""

    # Score all bank rows with one matmul and gather when the bank is at most this many times the
    # number of gathered rows: cheaper than copying (B, K + 1, feat_dim) rows; same values.
    dense_ratio: float = 4.0

    def __init__(self, student_dim: int, teacher_dim: int, num_data: int, feat_dim: int = 128,
                 num_negatives: int = 16384, temperature: float = 0.07, momentum: float = 0.5) -> None:
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim), ("num_data", num_data),
                            ("feat_dim", feat_dim), ("num_negatives", num_negatives)):
            if int(value) != value or value < 1:
                raise ValueError(f"CRDLoss: {name} must be a positive integer, got {value}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"CRDLoss: momentum must lie in [0, 1], got {momentum}")
        self.student_dim, self.teacher_dim = int(student_dim), int(teacher_dim)
        self.num_data, self.feat_dim, self.num_negatives = int(num_data), int(feat_dim), int(num_negatives)
        self.temperature = check_temperature("CRDLoss", temperature)
        self.momentum = float(momentum)
        self.embed_s = nn.Linear(self.student_dim, self.feat_dim)
        self.embed_t = nn.Linear(self.teacher_dim, self.feat_dim)
        bound = 1.0 / math.sqrt(self.feat_dim / 3)  # uniform rows of expected squared norm 1
        self.register_buffer("memory_student", torch.rand(self.num_data, self.feat_dim) * (2 * bound) - bound)
        self.register_buffer("memory_teacher", torch.rand(self.num_data, self.feat_dim) * (2 * bound) - bound)
        # Z for [student anchor vs teacher bank, teacher anchor vs student bank]; < 0 means not yet estimated
        self.register_buffer("z", torch.full((2,), -1.0))

    def extra_repr(self) -> str:
        return (f"num_data={self.num_data}, feat_dim={self.feat_dim}, num_negatives={self.num_negatives}, "
                f"temperature={self.temperature}, momentum={self.momentum}")

    def sample_negatives(self, index: torch.Tensor) -> torch.Tensor:
        """(B, num_negatives) indices drawn uniformly from the bank with replacement (the global RNG)."""
        return torch.randint(0, self.num_data, (len(index), self.num_negatives), device=index.device)

    def embed(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised float32 projections (B, feat_dim) of the flattened features."""
        s = self.embed_s(student_feat.flatten(1).to(self.embed_s.weight.dtype)).float()
        t = self.embed_t(teacher_feat.detach().flatten(1).to(self.embed_t.weight.dtype)).float()
        return F.normalize(s, dim=1), F.normalize(t, dim=1)

    def _check(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, index: torch.Tensor,
               negatives: torch.Tensor | None) -> None:
        shapes = f"student {tuple(student_feat.shape)}, teacher {tuple(teacher_feat.shape)}"
        if student_feat.dim() < 2 or teacher_feat.dim() < 2 or student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(f"CRDLoss: expected (batch, ...) features with the same batch, got {shapes}")
        b = student_feat.shape[0]
        widths = (student_feat[0].numel() if b else student_feat.shape[1:].numel(),
                  teacher_feat[0].numel() if b else teacher_feat.shape[1:].numel())
        if widths != (self.student_dim, self.teacher_dim):
            raise ValueError(f"CRDLoss: flattened feature widths (student {widths[0]}, teacher {widths[1]}) differ "
                             f"from student_dim={self.student_dim}, teacher_dim={self.teacher_dim} ({shapes})")
        for name, x, shape in (("index", index, (b,)), ("negatives", negatives, (b, self.num_negatives))):
            if x is None:
                continue
            if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise ValueError(f"CRDLoss: {name} must be an integer tensor, got "
                                 f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
            if tuple(x.shape) != shape:
                raise ValueError(f"CRDLoss: {name} shape {tuple(x.shape)}, expected {shape} ({shapes})")
            if x.numel() == 0:
                continue
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= self.num_data:
                raise ValueError(f"CRDLoss: {name} values must lie in [0, {self.num_data - 1}] "
                                 f"(num_data={self.num_data}), got min {low}, max {high}")

    def _scores(self, anchor: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """anchor_b · bank[idx[b, j]] as (B, 1 + K), in fp32 under AMP too (the NCE terms divide by T = 0.07)."""
        with torch.autocast(anchor.device.type, enabled=False):
            return self._dense_or_gathered_scores(anchor, bank, idx)

    def _dense_or_gathered_scores(self, anchor: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.num_data <= self.dense_ratio * idx.shape[1]:
            if self.training and torch.is_grad_enabled():
                bank = bank.clone()  # the matmul keeps the bank for backward; the update writes in place
            return (anchor @ bank.t()).gather(1, idx)
        rows = bank.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
        return torch.bmm(rows, anchor.unsqueeze(2)).squeeze(2)

    def _log_p(self, scores: torch.Tensor, which: int) -> torch.Tensor:
        logits = scores / self.temperature
        if self.z[which] < 0:
            with torch.no_grad():  # Z = N · mean exp(logits), from the first batch only
                log_mean = torch.logsumexp(logits.flatten(), 0) - math.log(logits.numel())
                self.z[which] = torch.exp(log_mean + math.log(self.num_data))
        return logits - torch.log(self.z[which])

    @torch.no_grad()
    def update_memory(self, index: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> None:
        """bank[i] ← norm(momentum · bank[i] + (1 − momentum) · embedding_i), both banks."""
        for bank, emb in ((self.memory_student, s), (self.memory_teacher, t)):
            blended = bank.index_select(0, index) * self.momentum + emb.detach().to(bank.dtype) * (1 - self.momentum)
            bank.index_copy_(0, index, F.normalize(blended, dim=1))

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, index: torch.Tensor,
                negatives: torch.Tensor | None = None) -> torch.Tensor:
        self._check(student_feat, teacher_feat, index, negatives)
        if student_feat.shape[0] == 0:  # nothing to contrast, and nothing to write to the memory banks
            return empty_loss(student_feat)
        device = self.memory_student.device
        index = index.to(device=device, dtype=torch.long)
        negatives = self.sample_negatives(index) if negatives is None else negatives.to(device, torch.long)
        idx = torch.cat([index.unsqueeze(1), negatives], dim=1)  # the positive in column 0
        s, t = self.embed(student_feat, teacher_feat)
        bank_s, bank_t = self.memory_student.float(), self.memory_teacher.float()
        loss = (nce_loss(self._log_p(self._scores(s, bank_t, idx), 0), self.num_data)
                + nce_loss(self._log_p(self._scores(t, bank_s, idx), 1), self.num_data))
        if self.training:
            self.update_memory(index, s, t)
        return loss
