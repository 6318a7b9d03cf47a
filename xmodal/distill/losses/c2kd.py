"""C2KD (Huo et al., CVPR 2024, "C2KD: Bridging the Modality Gap for Cross-Modal Knowledge
Distillation"): bidirectional distillation between proxy heads, on the non-target classes of the
samples whose student and teacher rankings agree.

Two proxy heads h (Linear(d, d) → BatchNorm → LeakyReLU(0.1) → Linear(d, C), the official 1-D proxy)
read the student feature f_S and the detached teacher feature f_T. With z the models' logits, sg(·) a
stop-gradient and KL_T(a ‖ b) = T²·KL(softmax(a/T) ‖ softmax(b/T)) per sample:

    p_S = h_S(f_S),  p_T = h_T(sg(f_T))
    L_proxy = mean_i [ KL_T(sg(z_T) ‖ p_T) + KL_T(sg(z_S) ‖ p_S) + KL_T(sg(p_S) ‖ z_S) ]
    τ_i = Kendall τ_b between p_T,i and p_S,i over the C − 1 non-target classes,  m_i = 1[τ_i > krc_threshold]
    L_sel = (1/B) Σ_i m_i · [ KL_T(sg(p̂_T) ‖ p̂_S) + KL_T(sg(p̂_S) ‖ p̂_T) ]_i,  p̂ = the non-target logits
    L = L_proxy + L_sel

The teacher proxy learns from the teacher logits and from the student proxy; the student proxy learns
from the student logits and from the teacher proxy, and passes the teacher's knowledge into the student
(its backbone through f_S, its classifier through the third term). The official scripts also train the
teacher network (its cross-entropy and KL(sg(p_T) ‖ z_T)); xmodal's teachers are frozen, so those two
terms are dropped and the bidirectional part lives between the two proxies, both owned by this loss
(trained by the student's optimizer; they never enter the exported student).

Facts from the official code (huofushuo/C2KD, and MST-Distill's C2KD baseline): T = 1, threshold 0 with
a strict ">", every KL a batch mean, the selected term divided by the whole batch (not by the number
selected), no label loss on the proxies, no weights between the terms. Choices made here:
* the non-target distributions drop the target class (softmax over C − 1 logits); the official code
  multiplies the target logit by 0, which leaves it in the softmax as a logit of 0;
* the Kendall rank correlation is taken over the non-target classes, the classes that are distilled;
  the official code ranks all C proxy logits (τ_b, as ``scipy.stats.kendalltau``);
* ``temperature`` applies to every KL, with the usual T² factor (the official setting T = 1 is unchanged);
* features with spatial dimensions (B, C, ...) are averaged over them first (the official conv proxy
  pools first); the hidden width of a proxy is its input width, as in the official 1-D proxy;
* initialisation follows the authors' proxy: Kaiming fan-out on the first layer, PyTorch's default on
  the last Linear (MST-Distill's 1-D port of the proxy puts Kaiming on both);
* in training mode a batch of one sample normalises with the BatchNorm running statistics.

Term (the logits come through ``inputs``)::

    dict(type="C2KDLoss", student="embedding", teacher="t.embedding", student_dim=84, teacher_dim=128,
         num_classes=10, inputs=dict(teacher_logits="t.logits", student_logits="student.logits"))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_target, check_temperature, empty_loss
from xmodal.distill.losses.kd import soft_kl
from xmodal.models.base import UNLABELLED
from xmodal.registry import MODELS


def kendall_tau(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kendall's τ_b of each row of x (B, n) with the same row of y, as (B,), over all n(n − 1)/2
    pairs at once: (concordant − discordant) / sqrt(untied pairs in x · untied pairs in y). A row
    without an untied pair (constant, or n < 2) gets 0, where scipy returns NaN."""
    n = x.shape[1]
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    dx = torch.sign(x[:, i] - x[:, j])
    dy = torch.sign(y[:, i] - y[:, j])
    score = (dx * dy).sum(1)  # tied pairs count 0
    untied = (dx != 0).sum(1).to(score.dtype) * (dy != 0).sum(1).to(score.dtype)
    return torch.where(untied > 0, score / untied.clamp_min(1).sqrt(), torch.zeros_like(score))


def non_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The (B, C − 1) logits left after removing each sample's target class, in class order."""
    b, c = logits.shape
    keep = ~F.one_hot(target, c).bool()
    return logits[keep].view(b, c - 1)


def c2kd_objective(proxy_student: torch.Tensor, proxy_teacher: torch.Tensor, student_logits: torch.Tensor,
                   teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0,
                   krc_threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """L = L_proxy + L_sel from the four (B, C) logit tensors; returns (loss, the (B,) selection mask).
    Stop-gradients as in the module docstring: ``teacher_logits`` never gets a gradient. An unlabelled
    sample (target −1) has no non-target classes: it joins L_proxy, which needs no label, and is never selected."""
    t = temperature
    p_s, p_t = proxy_student.float(), proxy_teacher.float()
    z_s, z_t = student_logits.float(), teacher_logits.detach().float()
    proxy = (soft_kl(p_t, z_t, t, "none") + soft_kl(p_s, z_s.detach(), t, "none")
             + soft_kl(z_s, p_s.detach(), t, "none"))
    labelled = target != UNLABELLED
    known = target.clamp_min(0)  # any class for an unlabelled row: the row is deselected below
    nt_s, nt_t = non_target(p_s, known), non_target(p_t, known)
    selected = (kendall_tau(nt_t.detach(), nt_s.detach()) > krc_threshold) & labelled
    mutual = soft_kl(nt_s, nt_t.detach(), t, "none") + soft_kl(nt_t, nt_s.detach(), t, "none")
    # masked_fill, not a product: a product would turn an unselected inf/NaN into NaN
    chosen = mutual.masked_fill(~selected, 0.0)
    return proxy.mean() + chosen.sum() / len(chosen), selected


class ProxyHead(nn.Module):
    """Linear(d, d) → BatchNorm1d → LeakyReLU(0.1) → Linear(d, C). Initialised as the official proxy
    (huofushuo/C2KD ``Tea``/``Stu``): the first linear, the official 1×1 conv, gets Kaiming-normal
    (fan_out) weights and no bias (the BatchNorm removes it); the last linear keeps PyTorch's default
    init, which the official code never touches (a Kaiming last layer makes the proxies several
    times sharper at step 0)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, in_dim, bias=False)
        self.bn = nn.BatchNorm1d(in_dim)
        self.fc2 = nn.Linear(in_dim, num_classes)
        nn.init.kaiming_normal_(self.fc1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.training and len(h) == 1:  # batch statistics of one sample are undefined
            h = F.batch_norm(h, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                             training=False, eps=self.bn.eps)
        else:
            h = self.bn(h)
        return self.fc2(F.leaky_relu(h, 0.1))


@MODELS.register_module()
class C2KDLoss(nn.Module):
    """``forward(student_feat, teacher_feat, target, teacher_logits, student_logits)``; the features are
    (B, dim) or (B, dim, ...) (averaged over the trailing dimensions), the logits (B, num_classes)."""

    def __init__(self, student_dim: int, teacher_dim: int, num_classes: int, temperature: float = 1.0,
                 krc_threshold: float = 0.0) -> None:
        super().__init__()
        for name, value, low in (("student_dim", student_dim, 1), ("teacher_dim", teacher_dim, 1),
                                 ("num_classes", num_classes, 3)):
            if int(value) != value or value < low:
                raise ValueError(f"C2KDLoss: {name} must be an integer >= {low}, got {value}"
                                 + (" (the non-target ranking needs 2 non-target classes)" if low == 3 else ""))
        if not -1.0 <= krc_threshold <= 1.0:
            raise ValueError(f"C2KDLoss: krc_threshold must lie in [-1, 1] (a Kendall correlation), got "
                             f"{krc_threshold}")
        self.student_dim, self.teacher_dim, self.num_classes = int(student_dim), int(teacher_dim), int(num_classes)
        self.temperature = check_temperature("C2KDLoss", temperature)
        self.krc_threshold = float(krc_threshold)
        self.proxy_student = ProxyHead(self.student_dim, self.num_classes)
        self.proxy_teacher = ProxyHead(self.teacher_dim, self.num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, temperature={self.temperature}, krc_threshold={self.krc_threshold}"

    @staticmethod
    def _pool(feat: torch.Tensor) -> torch.Tensor:
        return feat.flatten(2).mean(2) if feat.dim() > 2 else feat

    def _check(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, target: torch.Tensor | None,
               teacher_logits: torch.Tensor | None, student_logits: torch.Tensor | None) -> None:
        shapes = f"student {tuple(student_feat.shape)}, teacher {tuple(teacher_feat.shape)}"
        if student_feat.dim() < 2 or teacher_feat.dim() < 2 or student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(f"C2KDLoss: expected (batch, dim, ...) features with the same batch, got {shapes}")
        if (student_feat.shape[1], teacher_feat.shape[1]) != (self.student_dim, self.teacher_dim):
            raise ValueError(f"C2KDLoss: feature widths (student {student_feat.shape[1]}, teacher "
                             f"{teacher_feat.shape[1]}) differ from student_dim={self.student_dim}, "
                             f"teacher_dim={self.teacher_dim} ({shapes})")
        if teacher_logits is None or student_logits is None:
            raise ValueError("C2KDLoss: needs the teacher's and the student's logits: "
                             "inputs=dict(teacher_logits='<teacher>.logits', student_logits='student.logits')")
        check_logit_pair("C2KDLoss", student_logits, teacher_logits)
        b, c = student_logits.shape
        if (b, c) != (student_feat.shape[0], self.num_classes):
            raise ValueError(f"C2KDLoss: logits {(b, c)} do not match batch {student_feat.shape[0]} and "
                             f"num_classes={self.num_classes} ({shapes})")
        check_target("C2KDLoss", target, c, b, unlabelled=True)

    def proxies(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Proxy logits (B, num_classes) in fp32; the teacher feature is detached."""
        s = self._pool(student_feat)
        t = self._pool(teacher_feat.detach())
        p_s = self.proxy_student(s.to(self.proxy_student.fc1.weight.dtype)).float()
        p_t = self.proxy_teacher(t.to(self.proxy_teacher.fc1.weight.dtype)).float()
        return p_s, p_t

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, target: torch.Tensor | None = None,
                teacher_logits: torch.Tensor | None = None,
                student_logits: torch.Tensor | None = None) -> torch.Tensor:
        self._check(student_feat, teacher_feat, target, teacher_logits, student_logits)
        if student_feat.shape[0] == 0:  # BatchNorm cannot run on no samples
            return empty_loss(student_feat) + empty_loss(student_logits)
        p_s, p_t = self.proxies(student_feat, teacher_feat)
        loss, _ = c2kd_objective(p_s, p_t, student_logits, teacher_logits, target, self.temperature,
                                 self.krc_threshold)
        return loss
