"""PLDLoss against its formula: hand-computed 2×3 example, invariances, stability, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses import PLDLoss
from xmodal.distill.losses.pld import suffix_logsumexp, teacher_ranking


def _row_loss(s, t, y, tau):
    order = [y] + sorted((c for c in range(len(t)) if c != y), key=lambda c: -t[c])
    w = [math.exp(v / tau) for v in t]
    w = [v / sum(w) for v in w]
    total = 0.0
    for k, c in enumerate(order):
        rest = math.log(sum(math.exp(s[j]) for j in order[k:]))
        total += w[c] * (s[c] - rest)
    return -total


def test_hand_computed_2x3():
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]
    y, tau = [1, 0], 2.0
    expected = (_row_loss(s[0], t[0], y[0], tau) + _row_loss(s[1], t[1], y[1], tau)) / 2
    value = PLDLoss(tau=tau)(torch.tensor(s), torch.tensor(t), torch.tensor(y))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_ranking_puts_the_label_first_then_the_teacher_order():
    t = torch.tensor([[0.1, 3.0, 2.0, -1.0]])
    assert teacher_ranking(t, torch.tensor([3])).tolist() == [[3, 1, 2, 0]]
    x = torch.tensor([[1.0, 2.0, 3.0]])
    expected = [math.log(math.exp(1) + math.exp(2) + math.exp(3)), math.log(math.exp(2) + math.exp(3)), 3.0]
    assert suffix_logsumexp(x)[0].tolist() == pytest.approx(expected, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 9), shift=st.floats(-50, 50), seed=st.integers(0, 10_000))
def test_shift_invariant_positive_and_batch_mean(batch, classes, shift, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    value = PLDLoss()(s, t, y)
    assert value.item() > 0
    assert PLDLoss()(s + shift, t, y).item() == pytest.approx(value.item(), rel=1e-4, abs=1e-4)
    assert PLDLoss()(torch.cat([s, s]), torch.cat([t, t]), torch.cat([y, y])).item() == pytest.approx(
        value.item(), rel=1e-5)


def test_student_matching_the_ranking_scores_lower():
    t, y = torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([0])
    good, bad = torch.tensor([[6.0, 2.0, 0.0]]), torch.tensor([[0.0, 2.0, 6.0]])
    assert PLDLoss()(good, t, y) < PLDLoss()(bad, t, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    t = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = PLDLoss()(s, t, torch.tensor([0, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError, match="PLDLoss.*target"):
        PLDLoss()(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="PLDLoss.*shape"):
        PLDLoss()(torch.randn(2, 3), torch.randn(3, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="PLDLoss"):
        PLDLoss(tau=-1)
