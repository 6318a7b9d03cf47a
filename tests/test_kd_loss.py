import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses import KDLoss


def _softmax(xs, t):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def test_matches_hand_computed_value():
    s, t, temp = [1.0, 2.0, 3.0], [3.0, 1.0, 0.0], 2.0
    p_s, p_t = _softmax(s, temp), _softmax(t, temp)
    expected = temp**2 * sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    value = KDLoss(temperature=temp)(torch.tensor([s]), torch.tensor([t]))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_hand_computed_two_rows_is_batch_mean():
    rows_s = [[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]]
    rows_t = [[1.0, 1.0, -1.0], [2.0, 0.0, -2.0]]
    per_row = []
    for s, t in zip(rows_s, rows_t):
        p_s, p_t = _softmax(s, 4.0), _softmax(t, 4.0)
        per_row.append(16.0 * sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s)))
    value = KDLoss()(torch.tensor(rows_s), torch.tensor(rows_t))
    assert value.item() == pytest.approx(sum(per_row) / 2, rel=1e-6)


def test_zero_when_student_equals_teacher():
    logits = torch.randn(5, 7)
    assert KDLoss()(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_reaches_student_only():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    KDLoss()(student, teacher).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    student = (torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]) .to(dtype)).requires_grad_()
    teacher = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, 0.0]]).to(dtype)
    loss = KDLoss(temperature=1.0)(student, teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_batch_size_invariance_of_mean():
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    loss = KDLoss()
    assert loss(s.repeat(4, 1), t.repeat(4, 1)).item() == pytest.approx(loss(s, t).item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="KDLoss: temperature must be > 0"):
        KDLoss(temperature=temperature)


def test_rejects_shape_mismatch_naming_shapes():
    with pytest.raises(ValueError, match=r"KDLoss.*\(4, 10\).*\(4, 9\)"):
        KDLoss()(torch.zeros(4, 10), torch.zeros(4, 9))


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 12), temperature=st.floats(0.5, 8.0), seed=st.integers(0, 99))
def test_non_negative_and_finite_on_random_shapes(batch, classes, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, classes, generator=gen) * 5, torch.randn(batch, classes, generator=gen) * 5
    value = KDLoss(temperature=temperature)(s, t)
    assert torch.isfinite(value) and value.item() >= -1e-6
