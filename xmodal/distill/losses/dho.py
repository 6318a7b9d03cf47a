"""Dual-head optimisation (DHO; Kang, Lee, Jang, Hwang, 2025, "Simple yet Effective Semi-supervised
Knowledge Distillation from Vision-Language Models via Dual-Head Optimization").

The student (``DualHeadClassifier``) has two linear heads on one feature. Labels train the main head,
the teacher trains the auxiliary head, so the two gradients do not conflict in one classifier:

    L = λ·CE(z_main, y) + (1 − λ)·T²·KL(softmax(z_T/T) ‖ softmax(z_aux/T)),   λ = 0.5, T = 2

CE runs over the labelled samples (label ≠ −1), KL over every sample, so unlabelled data (label −1)
only feeds distillation: the semi-supervised setting of the paper. The official script adds a
labelled and an unlabelled KL term (each a batch mean); here one batch mean over all samples takes
the (1 − λ) weight of the paper's equation. This loss includes the cross-entropy: set the Distiller's
``task_loss_weight=0``. Term: ``dict(type="DHOLoss", student="logits_aux", teacher="t.logits",
inputs=dict(main_logits="student.logits_main"))``. Inference mixes the heads
(``DualHeadCombinerHook`` picks the mix on the validation split).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, check_temperature
from xmodal.distill.losses.kd import soft_kl
from xmodal.registry import MODELS

UNLABELLED = -1


@MODELS.register_module()
class DHOLoss(nn.Module):
    def __init__(self, temperature: float = 2.0, lam: float = 0.5) -> None:
        super().__init__()
        self.temperature = check_temperature("DHOLoss", temperature)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"DHOLoss: lam (the cross-entropy share) must lie in [0, 1], got {lam}")
        self.lam = float(lam)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None, main_logits: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("DHOLoss", student_logits, teacher_logits)
        kd = soft_kl(student_logits, teacher_logits.detach(), self.temperature)
        if self.lam == 0.0:
            return kd
        if main_logits is None or target is None:
            raise ValueError("DHOLoss: needs the main head's logits (inputs=dict(main_logits='student.logits_main')) "
                             "and the labels (target) for its cross-entropy part")
        check_logit_pair("DHOLoss", main_logits, student_logits)
        b, c = main_logits.shape
        if target.shape != (b,) or (target.numel() and (int(target.min()) < UNLABELLED or int(target.max()) >= c)):
            raise ValueError(f"DHOLoss: target must have shape ({b},) with values in [0, {c - 1}] or −1 "
                             f"(unlabelled); got shape {tuple(target.shape)}, values "
                             f"{target.unique().tolist()[:10]}")
        labelled = target != UNLABELLED
        ce = (F.cross_entropy(main_logits.float()[labelled], target[labelled]) if labelled.any()
              else main_logits.float().sum() * 0.0)
        return self.lam * ce + (1 - self.lam) * kd
