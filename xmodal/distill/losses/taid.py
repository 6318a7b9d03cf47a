"""Temporally adaptive interpolated distillation (TAID; Shing, Misaki, Bao, Yokoi, Akiba, ICLR 2025,
"TAID: Temporally Adaptive Interpolated Distillation for Efficient Knowledge Transfer in Language
Models").

The student is pulled towards an intermediate target that moves from (mostly) itself to the teacher:

    p_t = softmax((1 − t)·sg(s) + t·z_T)            (sg = stop-gradient, interpolation of logits)
    L   = KL(p_t ‖ softmax(s)),  mean over the batch

``forward`` is the formula at the current ``t`` (a buffer, so it is saved with the model).
:class:`TAIDSchedule` moves ``t`` during training (t_start 0.4 → t_end 1.0, momentum β = 0.99 of the
loss's relative change, step size α = 5e-4, never below the linear ramp), driven by
``xmodal.distill.schedules.TAIDHook`` after every training step (``advance_on_val=True``: also after
every validation batch, as the official code). The official code minimises the cross-entropy −Σ p_t log q_s,
which differs from this KL by the entropy of p_t (a constant for the student's gradient); xmodal
returns the KL, so the loss is 0 when student and teacher agree, and feeds the cross-entropy to the
schedule so ``t`` moves as in the paper.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.distill.losses.checks import check_logit_pair, empty_loss
from xmodal.registry import MODELS


def _check_t(value: float, what: str = "t") -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"TAIDLoss: {what} must lie in [0, 1], got {value}")
    return float(value)


@MODELS.register_module()
class TAIDLoss(nn.Module):
    def __init__(self, t: float = 0.4) -> None:
        super().__init__()
        self.register_buffer("t", torch.tensor(_check_t(t)))
        self.last_cross_entropy: float | None = None  # read by the schedule after each step

    def set_t(self, value: float) -> None:
        self.t.fill_(_check_t(value))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        check_logit_pair("TAIDLoss", student_logits, teacher_logits)
        if student_logits.shape[0] == 0:
            return empty_loss(student_logits)  # last_cross_entropy keeps the last real batch's value
        s = student_logits.float()
        t = self.t.float()
        mixed = (1 - t) * s.detach() + t * teacher_logits.detach().float()
        log_p = F.log_softmax(mixed, dim=1)
        log_q = F.log_softmax(s, dim=1)
        kl = F.kl_div(log_q, log_p, log_target=True, reduction="sum") / s.shape[0]
        # recorded in eval mode too: TAIDHook(advance_on_val=True) steps t on validation batches
        entropy = -(log_p.exp() * log_p).sum() / s.shape[0]
        self.last_cross_entropy = float(kl.detach() + entropy)
        return kl


@dataclasses.dataclass
class TAIDSchedule:
    """TAID's adaptive update of ``t``, one call per optimisation step.

    With m the momentum of the relative loss change r = (ℓ_prev − ℓ)/ℓ_prev:
    m ← β·m + (1 − β)·r;  t ← min(t_end, max(t_start + (t_end − t_start)·progress, t + α·σ(m)·(1 − t))).
    The first call only records ℓ. ``adaptive=False`` follows the linear ramp alone.
    """

    t_start: float = 0.4
    t_end: float = 1.0
    alpha: float = 5e-4
    beta: float = 0.99
    adaptive: bool = True
    prev_loss: float | None = None
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _check_t(self.t_start, "t_start")
        _check_t(self.t_end, "t_end")
        if self.t_end < self.t_start:
            raise ValueError(f"TAIDSchedule: t_end ({self.t_end}) must be ≥ t_start ({self.t_start})")

    def step(self, t: float, loss: float, progress: float) -> float:
        ramp = self.t_start + (self.t_end - self.t_start) * min(max(progress, 0.0), 1.0)
        if self.prev_loss is None:
            self.prev_loss = loss
            return t
        relative = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = self.beta * self.momentum + (1 - self.beta) * relative
        self.prev_loss = loss
        if not self.adaptive:
            return ramp
        delta = self.alpha * (1 - t) / (1 + math.exp(-self.momentum))
        return min(self.t_end, max(ramp, t + delta))

    def state_dict(self) -> dict:
        return {"prev_loss": self.prev_loss, "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        self.prev_loss, self.momentum = state["prev_loss"], float(state["momentum"])
