"""DKDLoss against its formula (Zhao et al. 2022): a hand-computed 2×3 example, the properties,
stability at extreme logits, and the warm-up schedule hook."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses import DKDLoss, KDLoss
from xmodal.distill.schedules import linear_warmup


def _softmax(xs, t):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_hand_computed_2x3():
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]
    target, temp, alpha, beta = [0, 2], 2.0, 1.0, 8.0
    total = 0.0
    for row_s, row_t, y in zip(s, t, target):
        p_s, p_t = _softmax(row_s, temp), _softmax(row_t, temp)
        tckd = _kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        rest_s = _softmax([v for i, v in enumerate(row_s) if i != y], temp)
        rest_t = _softmax([v for i, v in enumerate(row_t) if i != y], temp)
        total += temp**2 * (alpha * tckd + beta * _kl(rest_t, rest_s))
    value = DKDLoss(temperature=temp, alpha=alpha, beta=beta)(torch.tensor(s), torch.tensor(t), torch.tensor(target))
    assert value.item() == pytest.approx(total / 2, rel=1e-5)


def test_alpha_beta_one_is_not_kd_but_bounded_by_it():
    # KD = TCKD + (1 − p_t^gt)·NCKD (paper eq. 3), so DKD(α=1, β=1) ≥ KD with equality when p_t^gt → 0
    torch.manual_seed(0)
    s, t, y = torch.randn(16, 6), torch.randn(16, 6), torch.randint(0, 6, (16,))
    assert DKDLoss(4.0, 1.0, 1.0)(s, t, y).item() >= KDLoss(4.0)(s, t).item() - 1e-6


def test_zero_when_student_equals_teacher_and_gradient_to_student_only():
    logits = torch.randn(5, 7)
    y = torch.randint(0, 7, (5,))
    assert DKDLoss()(logits, logits.clone(), y).item() == pytest.approx(0.0, abs=1e-5)
    student, teacher = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    DKDLoss()(student, teacher, torch.tensor([0, 1, 2, 0])).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    student = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    teacher = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = DKDLoss()(student, teacher, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_nonnegative_and_batch_mean(batch, classes, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    loss = DKDLoss()
    value = loss(s, t, y)
    assert value.item() >= -1e-5
    doubled = loss(torch.cat([s, s]), torch.cat([t, t]), torch.cat([y, y]))
    assert doubled.item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6)


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError, match="DKDLoss.*target"):
        DKDLoss()(torch.randn(2, 3), torch.randn(2, 3), None)
    with pytest.raises(ValueError, match=r"DKDLoss.*\[0, 2\]"):
        DKDLoss()(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="DKDLoss.*shape"):
        DKDLoss()(torch.randn(2, 3), torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="temperature"):
        DKDLoss(temperature=0)


def test_warmup_follows_the_paper_ramp():
    assert [linear_warmup(e, 20) for e in (0, 9, 19, 30)] == pytest.approx([0.05, 0.5, 1.0, 1.0])


def test_warmup_hook_scales_the_named_term(tmp_path):
    from types import SimpleNamespace

    from xmodal.distill import Distiller, DistillWeightWarmupHook
    from xmodal.engine.checkpoint import save_checkpoint_file
    from xmodal.models import ModalityClassifier

    student = dict(type="ModalityClassifier", encoders=dict(image=dict(type="LeNet5", input_size=28, out_dim=8)),
                   head=dict(type="ClsHead", num_classes=3))
    path = tmp_path / "t.pth"
    save_checkpoint_file({"state_dict": ModalityClassifier(**{k: v for k, v in student.items() if k != "type"})
                          .state_dict()}, path)
    model = Distiller(student=student, teachers=dict(t0=dict(model=student, checkpoint=str(path))),
                      losses=[dict(type="DKDLoss", weight=2.0, student="logits", teacher="t0.logits")])
    hook = DistillWeightWarmupHook(terms=["dkd_0"], warmup_epochs=4)
    for epoch, expected in ((0, 0.5), (1, 1.0), (5, 2.0)):
        hook.before_train_epoch(SimpleNamespace(model=model, epoch=epoch))
        assert model.terms[0].weight == pytest.approx(expected)
    with pytest.raises(KeyError, match="dkd_0"):
        DistillWeightWarmupHook(terms=["kd_0"]).before_train_epoch(SimpleNamespace(model=model, epoch=0))
