"""SinKDLoss against its formula (Cui et al. 2024): a hand-computed 2×3 value with the plain (not log-domain)
Sinkhorn iterations, the known value at student == teacher, invariances, stability, bad input, registry."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses.sinkd import SinKDLoss
from xmodal.registry import MODELS


def _softmax(xs, t):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def _plain_sinkd(s, t, temp, eps, iterations):
    """The official algorithm written out: L1 cost, K = exp(−W/ε), row then column normalisation, Σ P·W / B."""
    p = [_softmax(row, temp) for row in s]
    q = [_softmax(row, temp) for row in t]
    b = len(s)
    w = [[sum(abs(x - y) for x, y in zip(p[i], q[j])) for j in range(b)] for i in range(b)]
    k = [[math.exp(-w[i][j] / eps) for j in range(b)] for i in range(b)]
    for _ in range(iterations):
        k = [[v / sum(row) for v in row] for row in k]
        cols = [sum(k[i][j] for i in range(b)) for j in range(b)]
        k = [[k[i][j] / cols[j] for j in range(b)] for i in range(b)]
    return sum(k[i][j] * w[i][j] for i in range(b) for j in range(b)) / b


S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]


@pytest.mark.parametrize("temp, eps, iterations", [(2.0, 0.1, 20), (1.0, 0.5, 1), (3.0, 1.0, 5)])
def test_hand_computed_2x3(temp, eps, iterations):
    expected = _plain_sinkd(S, T, temp, eps, iterations)
    value = SinKDLoss(temperature=temp, epsilon=eps, iterations=iterations)(torch.tensor(S), torch.tensor(T))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_known_value_when_student_equals_teacher():
    # two samples d apart: K = [[1, e], [e, 1]] is already doubly stochastic after one row division,
    # so P = K / (1 + e) and L = d·e / (1 + e) = d / (1 + exp(d/ε)): small, but not zero
    logits = torch.tensor(S)
    p = [_softmax(row, 2.0) for row in S]
    d = sum(abs(x - y) for x, y in zip(p[0], p[1]))
    assert SinKDLoss()(logits, logits.clone()).item() == pytest.approx(d / (1 + math.exp(d / 0.1)), rel=1e-4)
    # zero when every row is the same distribution (the cost matrix is 0)
    same = torch.tensor([[1.0, 2.0, 3.0]] * 4)
    assert SinKDLoss()(same, same + 5.0).item() == pytest.approx(0.0, abs=1e-6)


def test_single_sample_is_the_l1_distance():
    s, t = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[2.0, 0.0, 1.0]])
    expected = sum(abs(a - b) for a, b in zip(_softmax(S[0], 2.0), _softmax(T[0], 2.0)))
    assert SinKDLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_through_the_plan_to_the_student_only():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    loss = SinKDLoss(epsilon=0.5)
    loss(student, teacher).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    # the autograd gradient is that of the whole function (plan included): a central finite difference agrees
    direction, h = torch.randn(5, 4), 1e-2
    with torch.no_grad():
        numeric = (loss(student + h * direction, teacher) - loss(student - h * direction, teacher)) / (2 * h)
    assert (student.grad * direction).sum().item() == pytest.approx(numeric.item(), rel=2e-2, abs=1e-5)


def test_log_domain_survives_where_the_kernel_underflows():
    # all costs are 2 and 2/0.01 = 200: exp(−200) is 0 in fp32, the plain iteration would give 0/0
    s = torch.tensor([[30.0, -30.0, 0.0], [30.0, -30.0, 0.0]])
    t = torch.tensor([[-30.0, 30.0, 0.0], [-30.0, 30.0, 0.0]])
    value = SinKDLoss(temperature=1.0, epsilon=0.01)(s, t)
    assert value.item() == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    student = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    teacher = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = SinKDLoss()(student, teacher)
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_bounds_duplication_and_pairing_invariance(batch, classes, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = 3 * torch.randn(batch, classes, generator=g), 3 * torch.randn(batch, classes, generator=g)
    loss = SinKDLoss()
    value = loss(s, t).item()
    # P/B sums to 1, so the value is a weighted mean of L1 distances between probability vectors
    assert -1e-6 <= value <= 2.0 + 1e-5
    doubled = loss(torch.cat([s, s]), torch.cat([t, t])).item()
    assert doubled == pytest.approx(value, rel=1e-4, abs=1e-6)
    # the pairing of student and teacher rows is not used: shuffling either side alone changes nothing
    perm_s = torch.randperm(batch, generator=g)
    perm_t = torch.randperm(batch, generator=g)
    assert loss(s[perm_s], t[perm_t]).item() == pytest.approx(value, rel=1e-4, abs=1e-6)


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError, match=r"SinKDLoss.*student \(2, 3\) and teacher \(2, 4\)"):
        SinKDLoss()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"SinKDLoss.*shape"):
        SinKDLoss()(torch.randn(6), torch.randn(6))
    assert SinKDLoss()(torch.randn(0, 3), torch.randn(0, 3)).item() == 0.0  # an empty batch: 0, no error
    with pytest.raises(ValueError, match=r"SinKDLoss: temperature must be > 0, got 0"):
        SinKDLoss(temperature=0)
    with pytest.raises(ValueError, match=r"SinKDLoss: epsilon must be > 0, got -0.1"):
        SinKDLoss(epsilon=-0.1)
    with pytest.raises(ValueError, match=r"SinKDLoss: iterations must be an integer >= 1, got 0"):
        SinKDLoss(iterations=0)
    with pytest.raises(ValueError, match=r"SinKDLoss: iterations .* got 2.5"):
        SinKDLoss(iterations=2.5)


def test_registry_builds_it_and_one_step_backpropagates():
    loss = MODELS.build(dict(type="SinKDLoss"))
    assert isinstance(loss, SinKDLoss)
    assert (loss.temperature, loss.epsilon, loss.iterations) == (2.0, 0.1, 20)
    torch.manual_seed(0)
    student = torch.nn.Linear(6, 4)
    x, teacher_logits = torch.randn(8, 6), 3 * torch.randn(8, 4)
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    before = loss(student(x), teacher_logits)
    before.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())
    optimizer.step()
    assert torch.isfinite(loss(student(x), teacher_logits))
