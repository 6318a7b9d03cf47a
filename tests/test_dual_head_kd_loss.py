"""DualHeadKDLoss (binary KL of logit gaps) against its formula."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses import DualHeadKDLoss


def _bern_kl_half(d):
    return 0.5 * math.log(0.5 / d) + 0.5 * math.log(0.5 / (1 - d))


def test_hand_computed_2x3():
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]
    temp = 2.0
    total = sum(_bern_kl_half(1 / (1 + math.exp(-(s[b][c] - t[b][c]) / temp))) for b in range(2) for c in range(3))
    expected = temp * temp * total / 2
    assert DualHeadKDLoss(temp)(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(expected, rel=1e-5)


def test_zero_only_when_logits_match():
    z = torch.randn(4, 5)
    assert DualHeadKDLoss()(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # unlike softmax KD it is not shift invariant: the auxiliary head matches raw logits
    assert DualHeadKDLoss()(z + 1.0, z).item() > 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_and_nonzero_gradients_at_extreme_logits(dtype):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    t = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = DualHeadKDLoss()(s, t)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    assert s.grad[0, 0] > 0 and s.grad[0, 1] < 0  # the gap keeps pulling (no clamp plateau)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(1, 9), temp=st.floats(0.5, 8), seed=st.integers(0, 10_000))
def test_symmetric_nonnegative_batch_mean(batch, classes, temp, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, classes, generator=g) * 4, torch.randn(batch, classes, generator=g) * 4
    loss = DualHeadKDLoss(temp)
    value = loss(s, t).item()
    assert value >= 0
    assert loss(t, s).item() == pytest.approx(value, rel=1e-5, abs=1e-6)  # depends on |s − t| only
    assert loss(torch.cat([s, s]), torch.cat([t, t])).item() == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError, match="DualHeadKDLoss.*shape"):
        DualHeadKDLoss()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="DualHeadKDLoss: temperature"):
        DualHeadKDLoss(temperature=0)
