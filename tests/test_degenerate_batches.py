"""Empty and degenerate batches: every distillation loss stays finite, with finite gradients.

Three batches a real run meets: B = 0 (the last, partial batch of a filtered or label-budgeted loader,
a rank with nothing left), a batch of one class, and a batch with no label at all (every label
``UNLABELLED``, −1: semi-supervised distillation). Each loss must return a finite scalar (0 where
nothing is defined, e.g. no samples) whose gradient is finite, so one such batch neither stops a run
(NaN guard) nor poisons the weights. Losses that read labels use only the labelled rows for the part
that needs a label.
"""

from __future__ import annotations

import pytest
import torch

import xmodal.distill.losses  # noqa: F401  (registers the losses)
import xmodal.distill.retrieval  # noqa: F401
from xmodal.distill.unidistill import UniDistillFeatureLoss, UniDistillRelationLoss, UniDistillResponseLoss
from xmodal.models.base import UNLABELLED
from xmodal.registry import MODELS

C, D = 4, 3
KINDS = ("empty", "one_class", "unlabelled")
GRID = dict(bev_range=(0.0, 0.0, 4.0, 4.0), cell_size=0.5, stride=2)


def _target(kind: str, b: int) -> torch.Tensor:
    if kind == "unlabelled":
        return torch.full((b,), UNLABELLED, dtype=torch.long)
    return torch.full((b,), 2, dtype=torch.long)  # one class (an empty batch has none)


def _leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape) * scale).requires_grad_(True)


def _case(name: str, kind: str) -> tuple[torch.nn.Module, list, list[torch.Tensor]]:
    """(loss, forward args, the tensors whose gradients must be finite)."""
    torch.manual_seed(0)
    b = 0 if kind == "empty" else 5
    y = _target(kind, b)
    s, t = _leaf(b, C), torch.randn(b, C)
    if name in ("KDLoss", "DKDLoss", "DISTLoss", "PLDLoss", "SinKDLoss", "TAIDLoss"):
        return MODELS.build({"type": name}), [s, t, y], [s]
    if name == "DualHeadKDLoss":
        return MODELS.build({"type": name}), [s, t], [s]
    if name == "DHOLoss":
        main = _leaf(b, C)
        return MODELS.build({"type": name}), [s, t, y, main], [s, main]
    if name == "FitNetLoss":
        fs = _leaf(b, D)
        return MODELS.build({"type": name}), [fs, torch.randn(b, D)], [fs]
    if name == "RKDLoss":
        fs = _leaf(b, D)
        return MODELS.build({"type": name}), [fs, torch.randn(b, D + 1)], [fs]
    if name == "MADLoss":
        fs = _leaf(b, D)
        return MODELS.build({"type": name}), [fs, torch.randn(b, D + 2), torch.randn(b, C)], [fs]
    if name == "LoadBalanceLoss":
        gate = _leaf(b, C)
        return MODELS.build({"type": name, "mode": "cv"}), [gate.softmax(1)], [gate]
    if name == "C2KDLoss":
        fs = _leaf(b, D)
        loss = MODELS.build({"type": name, "student_dim": D, "teacher_dim": D + 1, "num_classes": C})
        return loss, [fs, torch.randn(b, D + 1), y, torch.randn(b, C), s], [fs, s]
    if name == "CRDLoss":
        fs = _leaf(b, D)
        loss = MODELS.build({"type": name, "student_dim": D, "teacher_dim": D + 1, "num_data": 8, "feat_dim": 4,
                             "num_negatives": 3})
        return loss, [fs, torch.randn(b, D + 1), torch.arange(b)], [fs]
    if name in ("CPRDLoss", "DCDLoss"):
        scores = _leaf(b, 4)
        return MODELS.build({"type": name}), [scores, torch.randn(b, 4)], [scores]
    boxes = [torch.tensor([[1.5, 1.5, 0.0, 2.0, 2.0, 1.0, 0.0]])] * b
    if kind == "unlabelled":
        boxes = [torch.zeros(0, 7)] * b  # a scene without annotated boxes
    if name in ("UniDistillFeatureLoss", "UniDistillRelationLoss"):
        fs = _leaf(b, D, 4, 4)
        cls = UniDistillFeatureLoss if name == "UniDistillFeatureLoss" else UniDistillRelationLoss
        return cls(**GRID), [fs, torch.randn(b, D, 4, 4), boxes], [fs]
    if name == "UniDistillResponseLoss":
        hs, rs = _leaf(b, 2, 4, 4), _leaf(b, 3, 4, 4)
        args = [hs, torch.randn(b, 2, 4, 4), boxes, rs, torch.randn(b, 3, 4, 4)]
        return UniDistillResponseLoss(**GRID), args, [hs, rs]
    raise AssertionError(name)


LOSSES = ("KDLoss", "DKDLoss", "DISTLoss", "PLDLoss", "SinKDLoss", "TAIDLoss", "DualHeadKDLoss", "DHOLoss",
          "FitNetLoss", "RKDLoss", "MADLoss", "LoadBalanceLoss", "C2KDLoss", "CRDLoss", "CPRDLoss", "DCDLoss",
          "UniDistillFeatureLoss", "UniDistillRelationLoss", "UniDistillResponseLoss")


def test_every_loss_is_covered():
    registered = {name for name in MODELS.module_dict if name.endswith("Loss")
                  and MODELS.get(name).__module__.startswith(("xmodal.distill.losses.", "xmodal.distill.retrieval.",
                                                              "xmodal.distill.unidistill."))}
    assert registered == set(LOSSES), sorted(registered ^ set(LOSSES))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", LOSSES)
def test_degenerate_batch_gives_a_finite_loss_and_gradient(name, kind):
    loss, args, leaves = _case(name, kind)
    loss.train()
    out = loss(*args)
    assert isinstance(out, torch.Tensor) and out.numel() == 1, (name, kind, out)
    assert torch.isfinite(out), (name, kind, out)
    if kind == "empty":
        assert out.item() == 0.0, (name, out)  # nothing to compare: no signal, not a made-up one
    if out.requires_grad:
        out.backward()
    for leaf in leaves:
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        assert torch.isfinite(grad).all(), (name, kind, grad)
