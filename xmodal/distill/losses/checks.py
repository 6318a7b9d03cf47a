"""Argument checks shared by the logit losses: one clear error naming the loss and the values."""

from __future__ import annotations

import torch


def check_temperature(loss: str, temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"{loss}: temperature must be > 0, got {temperature}")
    return float(temperature)


def check_logit_pair(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"{loss}: expected student and teacher logits of the same (batch, classes) shape, got "
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}"
        )


def empty_loss(x: torch.Tensor) -> torch.Tensor:
    """The loss of a batch without samples: 0 in fp32, still joined to ``x``'s graph (its gradient is 0),
    so ``backward()`` and a NaN guard see an ordinary step instead of the NaN of a mean over nothing."""
    return x.float().flatten()[:0].sum()


def check_target(loss: str, target: torch.Tensor | None, num_classes: int, batch: int,
                 unlabelled: bool = False) -> None:
    """Class ids in [0, num_classes − 1]; with ``unlabelled`` also −1 (``UNLABELLED``, a sample without a label)."""
    if target is None:
        raise ValueError(f"{loss}: needs the class labels (target), got None")
    if target.shape != (batch,):
        raise ValueError(f"{loss}: target shape {tuple(target.shape)}, expected ({batch},)")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"{loss}: target must hold integer class indices, got dtype {target.dtype}")
    low = -1 if unlabelled else 0
    if target.numel() and (int(target.min()) < low or int(target.max()) >= num_classes):
        allowed = " or -1 (unlabelled)" if unlabelled else ""
        raise ValueError(f"{loss}: target values must lie in [0, {num_classes - 1}]{allowed}, got "
                         f"min {int(target.min())}, max {int(target.max())}")
