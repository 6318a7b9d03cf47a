"""DISTLoss against its formula (Huang et al. 2022): hand-computed values with plain-math Pearson correlations,
zero at student == teacher, constant rows, invariances, stability, bad input, registry."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses.dist import DISTLoss
from xmodal.registry import MODELS


def _softmax(xs, t):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def _pearson(a, b, eps=1e-8):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    da, db = [x - ma for x in a], [y - mb for y in b]
    norm = math.sqrt(sum(x * x for x in da)) * math.sqrt(sum(y * y for y in db))
    return sum(x * y for x, y in zip(da, db)) / (norm + eps)


def _plain_dist(s, t, tau, beta, gamma):
    ys = [_softmax(row, tau) for row in s]
    yt = [_softmax(row, tau) for row in t]
    inter = 1 - sum(_pearson(a, b) for a, b in zip(ys, yt)) / len(ys)
    cols_s, cols_t = list(zip(*ys)), list(zip(*yt))
    intra = 1 - sum(_pearson(a, b) for a, b in zip(cols_s, cols_t)) / len(cols_s)
    return tau * tau * (beta * inter + gamma * intra)


CASES = [
    # 2×3: with two samples each class column's correlation is ±1, so the inter part carries the detail
    ([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]),
    # 3×4: non-degenerate column correlations for the intra part
    ([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 0.5], [2.0, 2.5, -0.5, 1.0]],
     [[2.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.5, -2.0], [0.5, 3.0, 0.0, 1.0]]),
]


@pytest.mark.parametrize("s, t", CASES)
@pytest.mark.parametrize("tau, beta, gamma", [(1.0, 1.0, 1.0), (2.0, 1.0, 2.0), (4.0, 0.5, 0.0)])
def test_hand_computed(s, t, tau, beta, gamma):
    expected = _plain_dist(s, t, tau, beta, gamma)
    value = DISTLoss(tau=tau, beta=beta, gamma=gamma)(torch.tensor(s), torch.tensor(t))
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_zero_when_student_equals_teacher_and_gradient_to_student_only():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    assert DISTLoss()(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-5)
    # a sharper student (logits × 2) is not an affine map of the teacher's probabilities: small but not 0
    assert DISTLoss()(2 * logits, logits).item() > 1e-4
    student, teacher = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    DISTLoss()(student, teacher).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


def test_constant_rows_and_columns_count_as_uncorrelated():
    # all-zero student logits: every row and every column is constant, correlation 0, each part is 1
    student = torch.zeros(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5)
    value = DISTLoss(tau=2.0, beta=1.0, gamma=3.0)(student, teacher)
    value.backward()
    assert value.item() == pytest.approx(4.0 * (1.0 + 3.0), rel=1e-6)
    assert torch.isfinite(student.grad).all()
    # one sample: the class columns have one entry each, so the intra part is 1 whatever the logits
    s, t = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[2.0, 0.0, 1.0]])
    inter_only = DISTLoss(gamma=0.0)(s, t).item()
    assert DISTLoss()(s, t).item() == pytest.approx(inter_only + 1.0, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    student = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    teacher = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = DISTLoss()(student, teacher)
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(2, 6), classes=st.integers(2, 9), seed=st.integers(0, 10_000),
       tau=st.sampled_from([1.0, 2.0, 4.0]))
def test_bounds_duplication_and_permutations(batch, classes, seed, tau):
    g = torch.Generator().manual_seed(seed)
    s, t = 3 * torch.randn(batch, classes, generator=g), 3 * torch.randn(batch, classes, generator=g)
    # ε = 1e-12: the guard shifts a correlation by about ε/(‖a − ā‖·‖b − b̄‖), which duplicating the batch
    # halves for the columns; at the default 1e-8 that shows on nearly-saturated near-zero values
    loss = DISTLoss(tau=tau, beta=1.0, gamma=2.0, eps=1e-12)
    value = loss(s, t).item()
    assert -1e-5 <= value <= 2 * tau * tau * 3.0 + 1e-4
    # the mean over samples: a duplicated batch has the same inter part and the same column correlations
    assert loss(torch.cat([s, s]), torch.cat([t, t])).item() == pytest.approx(value, rel=1e-4, abs=1e-5)
    # the same shuffle of samples, or of classes, on both sides changes nothing
    rows = torch.randperm(batch, generator=g)
    cols = torch.randperm(classes, generator=g)
    assert loss(s[rows], t[rows]).item() == pytest.approx(value, rel=1e-4, abs=1e-5)
    assert loss(s[:, cols], t[:, cols]).item() == pytest.approx(value, rel=1e-4, abs=1e-5)
    # a constant added to a sample's logits is invisible to the softmax
    shift = torch.randn(batch, 1, generator=g)
    assert loss(s + shift, t - shift).item() == pytest.approx(value, rel=1e-4, abs=1e-5)


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError, match=r"DISTLoss.*student \(2, 3\) and teacher \(2, 4\)"):
        DISTLoss()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"DISTLoss.*shape"):
        DISTLoss()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"DISTLoss: needs at least 2 classes, got shape \(3, 1\)"):
        DISTLoss()(torch.randn(3, 1), torch.randn(3, 1))
    assert DISTLoss()(torch.randn(0, 3), torch.randn(0, 3)).item() == 0.0  # an empty batch: no signal, no error
    with pytest.raises(ValueError, match=r"DISTLoss: temperature must be > 0, got -1"):
        DISTLoss(tau=-1)
    with pytest.raises(ValueError, match=r"DISTLoss: eps must be > 0, got 0"):
        DISTLoss(eps=0)


def test_registry_builds_it_and_one_step_backpropagates():
    loss = MODELS.build(dict(type="DISTLoss"))
    assert isinstance(loss, DISTLoss)
    assert (loss.tau, loss.beta, loss.gamma) == (1.0, 1.0, 1.0)
    torch.manual_seed(0)
    student = torch.nn.Linear(6, 4)
    x, teacher_logits = torch.randn(8, 6), 3 * torch.randn(8, 4)
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    loss(student(x), teacher_logits).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())
    optimizer.step()
    assert torch.isfinite(loss(student(x), teacher_logits))
