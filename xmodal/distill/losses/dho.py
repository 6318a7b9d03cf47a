"""Dual-head optimisation (DHO; Kang, Lee, Jang, Hwang, 2025, "Simple yet Effective Semi-supervised
Knowledge Distillation from Vision-Language Models via Dual-Head Optimization").

The student (``DualHeadClassifier``) has two linear heads on one feature. Labels train the main head,
the teacher trains the auxiliary head, so the two gradients do not conflict in one classifier:

    L = λ·CE(z_main, y) + (1 − λ)·(KD_labelled + KD_unlabelled),   λ = 0.5, T = 2
    KD_set = mean over the set's samples of T²·KL(softmax(z_T/T) ‖ softmax(z_aux/T))

CE runs over the labelled samples, KL over every sample, so unlabelled data only feeds distillation:
the semi-supervised setting of the paper. A sample is unlabelled when its label is −1 (the project's
convention). ``kd_reduction="split"`` (default) is the official objective (erjui/DHO: one batch mean
per loader, added); a set with no sample in the batch adds 0. ``"batch"`` takes one mean over all
samples instead, which halves the distillation weight when the two sets are equal in size. This
loss includes the cross-entropy: set the Distiller's
``task_loss_weight=0``. Term: ``dict(type="DHOLoss", student="logits_aux", teacher="t.logits",
inputs=dict(main_logits="student.logits_main"))``. Inference mixes the heads
(``DualHeadCombinerHook`` picks the mix on the validation split).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_target, check_temperature
from xmodal.distill.losses.kd import soft_kl
from xmodal.registry import MODELS

UNLABELLED = -1
_KD_REDUCTIONS = ("split", "batch")


@MODELS.register_module()
class DHOLoss(nn.Module):
    def __init__(self, temperature: float = 2.0, lam: float = 0.5, kd_reduction: str = "split") -> None:
        super().__init__()
        self.temperature = check_temperature("DHOLoss", temperature)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"DHOLoss: lam (the cross-entropy share) must lie in [0, 1], got {lam}")
        if kd_reduction not in _KD_REDUCTIONS:
            raise ValueError(f"DHOLoss: kd_reduction={kd_reduction!r}; expected one of {_KD_REDUCTIONS}")
        self.lam, self.kd_reduction = float(lam), kd_reduction

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, lam={self.lam}, kd_reduction={self.kd_reduction!r}"

    def _check_target(self, target: torch.Tensor | None, b: int, c: int) -> None:
        check_target("DHOLoss", target, c, b, unlabelled=True)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None, main_logits: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("DHOLoss", student_logits, teacher_logits)
        b, c = student_logits.shape
        per_sample = soft_kl(student_logits, teacher_logits.detach(), self.temperature, "none")
        if self.kd_reduction == "batch" or (self.lam == 0.0 and target is None):
            kd = per_sample.mean()  # without labels every sample is one set: both reductions agree
        else:
            self._check_target(target, b, c)
            labelled = target != UNLABELLED
            # each set's own mean, summed; an empty set adds 0 (sum of nothing over max(1, 0))
            kd = sum(per_sample[m].sum() / m.sum().clamp_min(1) for m in (labelled, ~labelled))
        if self.lam == 0.0:
            return kd
        if main_logits is None or target is None:
            raise ValueError("DHOLoss: needs the main head's logits (inputs=dict(main_logits='student.logits_main')) "
                             "and the labels (target) for its cross-entropy part")
        check_logit_pair("DHOLoss", main_logits, student_logits)
        self._check_target(target, b, c)
        labelled = target != UNLABELLED
        ce = (F.cross_entropy(main_logits.float()[labelled], target[labelled]) if labelled.any()
              else main_logits.float().sum() * 0.0)
        return self.lam * ce + (1 - self.lam) * kd
