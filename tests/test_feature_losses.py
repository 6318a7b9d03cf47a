"""FitNetLoss and RKDLoss against their formulas, with invariances and stability."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses import FitNetLoss, RKDLoss
from xmodal.distill.losses.rkd import pairwise_distances, triplet_cosines


def _huber(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def test_fitnet_is_the_mean_squared_error():
    s = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    t = torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    expected = (1 + 0 + 1 + 1 + 4 + 4) / 6
    assert FitNetLoss()(s, t).item() == pytest.approx(expected)
    assert FitNetLoss()(t, t.clone()).item() == 0.0
    with pytest.raises(ValueError, match="connector"):
        FitNetLoss()(torch.randn(2, 3), torch.randn(2, 4))


def test_rkd_hand_computed_on_three_points():
    # student: a right triangle (0,0), (3,0), (0,4); teacher: an equilateral-free line-ish triangle
    s = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    ds = {(0, 1): 3.0, (0, 2): 4.0, (1, 2): 5.0}
    dt = {(0, 1): 1.0, (0, 2): 2.0, (1, 2): 1.0}
    mean_s, mean_t = sum(ds.values()) / 3, sum(dt.values()) / 3
    dist = sum(2 * _huber(ds[k] / mean_s, dt[k] / mean_t) for k in ds) / 9  # 6 off-diagonal entries of 9

    def cosines(points):
        out = []
        for i in range(3):
            for j in range(3):
                for k in range(3):
                    u = [points[j][0] - points[i][0], points[j][1] - points[i][1]]
                    v = [points[k][0] - points[i][0], points[k][1] - points[i][1]]
                    nu, nv = math.hypot(*u), math.hypot(*v)
                    out.append(0.0 if nu == 0 or nv == 0 else (u[0] * v[0] + u[1] * v[1]) / (nu * nv))
        return out

    angle = sum(_huber(a, b) for a, b in zip(cosines(s.tolist()), cosines(t.tolist()))) / 27
    assert RKDLoss(1.0, 0.0)(s, t).item() == pytest.approx(dist, rel=1e-5)
    assert RKDLoss(0.0, 1.0)(s, t).item() == pytest.approx(angle, rel=1e-5)
    assert RKDLoss()(s, t).item() == pytest.approx(dist + 2 * angle, rel=1e-5)


def test_rkd_helpers():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    torch.testing.assert_close(pairwise_distances(x), torch.tensor([[0.0, 5.0], [5.0, 0.0]]), atol=1e-5, rtol=0)
    assert triplet_cosines(x).shape == (2, 2, 2)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(2, 7), dim=st.integers(1, 6), scale=st.floats(0.1, 10.0), seed=st.integers(0, 10_000))
def test_rkd_invariant_to_scale_and_translation(batch, dim, scale, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    shift = torch.randn(1, dim, generator=g)
    base = RKDLoss()(s, t).item()
    assert RKDLoss()(s * scale + shift, t).item() == pytest.approx(base, rel=1e-3, abs=1e-5)
    assert RKDLoss()(t.clone(), t).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rkd_finite_gradients_at_extremes_and_coincident_points(dtype):
    s = torch.tensor([[1e4, -1e4], [1e4, -1e4], [0.0, 0.0]]).to(dtype).requires_grad_()  # two coincide
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1e4, 1e4]]).to(dtype)
    value = RKDLoss()(s, t)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    assert RKDLoss()(torch.randn(1, 3), torch.randn(1, 3)).item() == 0.0  # one sample: no pair, no relation
