"""CPRD and DCD retrieval distillation losses, in-batch mining, and the RetrievalDistiller wiring."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.retrieval import CPRDLoss, DCDLoss, RetrievalDistiller, mine_candidates, sample_candidates
from xmodal.distill.retrieval.dcd import entropy_share

S = [[5.0, 1.0, 3.0, 2.0], [4.0, 0.5, 0.0, 2.5]]  # column 0: the positive
T = [[9.0, 2.0, 7.0, 8.0], [3.0, 4.0, -1.0, 1.0]]


def _listmle(scores):
    return -sum(scores[k] - math.log(sum(math.exp(v) for v in scores[k:])) for k in range(len(scores)))


def test_cprd_hand_computed():
    # row 0: teacher order of the negatives = columns 3, 2, 1; row 1: columns 1, 3, 2
    rows = [[S[0][3], S[0][2], S[0][1]], [S[1][1], S[1][3], S[1][2]]]
    expected = (_listmle(rows[0]) + _listmle(rows[1])) / 2
    assert CPRDLoss()(torch.tensor(S), torch.tensor(T)).item() == pytest.approx(expected, rel=1e-6)
    tau = 0.5
    with_pos = [[v / tau for v in [S[0][0]] + rows[0]], [v / tau for v in [S[1][0]] + rows[1]]]
    expected = (_listmle(with_pos[0]) + _listmle(with_pos[1])) / 2
    value = CPRDLoss(tau=tau, include_positive=True)(torch.tensor(S), torch.tensor(T)).item()
    assert value == pytest.approx(expected, rel=1e-6)


def test_cprd_depends_only_on_the_teacher_order_and_prefers_agreeing_students():
    s, t = torch.tensor(S), torch.tensor(T)
    monotone = t.sign() * t.abs() ** 3 + 7.0  # same order, different scale
    assert CPRDLoss()(s, monotone).item() == pytest.approx(CPRDLoss()(s, t).item())
    agree = torch.tensor([[0.0, 1.0, 5.0, 9.0]])
    teacher = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert CPRDLoss()(agree, teacher) < CPRDLoss()(agree.flip(1), teacher)


def _bce(x, y):
    return max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))


def test_dcd_hand_computed_with_keep():
    keep, alpha, temp = 3, 0.3, 2.0
    # kept: positive + the 2 negatives the teacher scores highest (row 0: cols 3, 2; row 1: cols 1, 3)
    ks = [[S[0][0], S[0][3], S[0][2]], [S[1][0], S[1][1], S[1][3]]]
    kt = [[T[0][0], T[0][3], T[0][2]], [T[1][0], T[1][1], T[1][3]]]
    mse = temp**2 * sum((a / temp - b / temp) ** 2 for r in range(2) for a, b in zip(kt[r], ks[r])) / 6

    def entropy(row):
        z = [math.exp(v - max(row)) for v in row]
        p = [v / sum(z) for v in z]
        return -sum(q * math.log(q) for q in p)

    h = [entropy(kt[0]), entropy(kt[1])]
    bce = [sum(_bce(x, 1.0 if j == 0 else 0.0) for j, x in enumerate(ks[r])) / 3 for r in range(2)]
    expected = alpha * mse + (1 - alpha) * sum(h[r] / sum(h) * bce[r] for r in range(2))
    value = DCDLoss(temperature=temp, alpha=alpha, keep=keep)(torch.tensor(S), torch.tensor(T))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_dcd_mse_part_is_zero_when_scores_match_and_entropy_share_sums_to_one():
    t = torch.randn(5, 9)
    assert DCDLoss(alpha=1.0)(t, t.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert entropy_share(t).sum().item() == pytest.approx(1.0)
    certain = torch.tensor([[1e4, 0.0], [1e4, 0.0]])
    assert entropy_share(certain).tolist() == [0.5, 0.5]  # no 0/0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("loss", [CPRDLoss(), CPRDLoss(include_positive=True), DCDLoss()])
def test_finite_gradients_at_extreme_scores(loss, dtype):
    s = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 5.0, 0.0]]).to(dtype).requires_grad_()
    t = torch.tensor([[-1e4, 1e4, 0.0, 1.0], [1e4, -1e4, -5.0, 2.0]]).to(dtype)
    value = loss(s, t)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


@settings(max_examples=20, deadline=None)
@given(queries=st.integers(1, 6), negatives=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_batch_mean_and_shift_invariance(queries, negatives, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(queries, 1 + negatives, generator=g) * 3, torch.randn(queries, 1 + negatives, generator=g)
    for loss in (CPRDLoss(), DCDLoss()):
        value = loss(s, t).item()
        assert loss(torch.cat([s, s]), torch.cat([t, t])).item() == pytest.approx(value, rel=1e-5, abs=1e-6)
    # a ranking likelihood ignores a per-query shift of the student's scores
    assert CPRDLoss()(s + torch.randn(queries, 1, generator=g), t).item() == pytest.approx(
        CPRDLoss()(s, t).item(), rel=1e-4, abs=1e-5)


def test_bad_input_names_the_loss():
    for loss, name in ((CPRDLoss(), "CPRDLoss"), (DCDLoss(), "DCDLoss")):
        with pytest.raises(ValueError, match=f"{name}: expected student and teacher scores"):
            loss(torch.randn(2, 4), torch.randn(2, 5))
        with pytest.raises(ValueError, match=name):
            loss(torch.randn(2, 1), torch.randn(2, 1))
    with pytest.raises(ValueError, match="CPRDLoss: tau"):
        CPRDLoss(tau=0)
    with pytest.raises(ValueError, match="DCDLoss: keep"):
        DCDLoss(keep=1)
    with pytest.raises(ValueError, match="DCDLoss: alpha"):
        DCDLoss(alpha=2)


def test_mining_skips_same_image_rows_and_puts_the_query_first():
    sim = torch.tensor([[0.9, 0.8, 0.1, 0.5], [0.2, 0.9, 0.7, 0.1], [0.3, 0.6, 0.9, 0.4], [0.9, 0.1, 0.2, 0.8]])
    image_index = torch.tensor([0, 1, 2, 0])  # rows 0 and 3 show the same image
    positives = image_index.view(-1, 1) == image_index.view(1, -1)
    candidates = mine_candidates(sim, positives, 2)
    assert candidates.tolist() == [[0, 1, 2], [1, 2, 0], [2, 1, 3], [3, 2, 1]]
    assert mine_candidates(sim, positives, 10).shape == (4, 3)  # capped by the fewest negatives (2)
    with pytest.raises(ValueError, match="no negative"):
        mine_candidates(sim[:2, :2], torch.ones(2, 2, dtype=torch.bool), 1)


class _CountingTeacher(torch.nn.Module):
    """A dual-encoder-like teacher that records which pairs it was asked to score."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.asked = []

    def prepare(self, batch):
        lengths = torch.tensor([float(len(t)) for t in batch["text"]])
        return {"image": batch["image"].flatten(1)[:, :4], "text": lengths.view(-1, 1).expand(-1, 4)}

    def pair_scores(self, outputs, image_rows, text_rows):
        self.asked.append((image_rows.clone(), text_rows.clone()))
        return (outputs["image"][image_rows] * outputs["text"][text_rows]).sum(-1) * self.w


def test_distiller_asks_the_teacher_only_about_mined_candidates(monkeypatch):
    from xmodal.distill.retrieval import distiller as module

    teacher = _CountingTeacher()
    monkeypatch.setattr(module, "build_teacher", lambda name, spec, **kwargs: teacher)
    d = RetrievalDistiller(student=dict(type="DualEncoder", model_name="xmodal-tiny-clip"), teacher=dict(),
                           loss=dict(type="CPRDLoss"), num_negatives=2).train()
    batch = dict(image=torch.rand(5, 3, 32, 32), text=["a", "bb", "ccc", "dddd", "eeeee"],
                 image_index=torch.tensor([0, 1, 2, 3, 4]))
    losses = d(mode="loss", **batch)
    assert set(losses) == {"loss_itc", "loss_i2t", "loss_t2i"}
    assert [len(i) for i, _ in teacher.asked] == [5 * 3, 5 * 3]  # B × (1 + K) pairs per direction, not B × B
    image_rows, text_rows = teacher.asked[0]
    assert (image_rows.view(5, 3)[:, 0] == text_rows.view(5, 3)[:, 0]).all()  # positive first
    sum(losses.values()).backward()
    assert teacher.w.grad is None
    assert any(p.grad is not None for p in d.student.parameters())
    with pytest.raises(ValueError, match="directions"):
        RetrievalDistiller(student=dict(type="DualEncoder", model_name="xmodal-tiny-clip"), teacher=dict(),
                           loss=dict(type="CPRDLoss"), directions=("x2y",))


def test_random_candidates_are_uniform_negatives_with_the_query_first():
    """DCD's official candidates: random false captions (15 of them), not the student's hardest."""
    image_index = torch.tensor([0, 1, 2, 0, 3, 4])  # rows 0 and 3 show the same image
    positives = image_index.view(-1, 1) == image_index.view(1, -1)
    torch.manual_seed(0)
    counts = torch.zeros(6, 6)
    for _ in range(2000):
        c = sample_candidates(positives, 2)
        assert c.shape == (6, 3) and c[:, 0].tolist() == list(range(6))
        assert not positives.gather(1, c[:, 1:]).any() and (c[:, 1] != c[:, 2]).all()
        counts.scatter_add_(1, c[:, 1:], torch.ones(6, 2))
    # each of a row's negatives is drawn with probability K / (number of negatives)
    expected = (~positives).float() * 2 / (~positives).sum(1, keepdim=True) * 2000
    assert (counts - expected).abs().max() < 120
    assert sample_candidates(positives, 15).shape == (6, 5)  # capped like the hard mining


def test_distiller_random_candidates_image_to_text_only(monkeypatch):
    from xmodal.distill.retrieval import distiller as module

    teacher = _CountingTeacher()
    monkeypatch.setattr(module, "build_teacher", lambda name, spec, **kwargs: teacher)
    d = RetrievalDistiller(student=dict(type="DualEncoder", model_name="xmodal-tiny-clip"), teacher=dict(),
                           loss=dict(type="DCDLoss"), num_negatives=3, candidates="random", directions="i2t").train()
    batch = dict(image=torch.rand(5, 3, 32, 32), text=["a", "bb", "ccc", "dddd", "eeeee"],
                 image_index=torch.tensor([0, 1, 2, 3, 4]))
    losses = d(mode="loss", **batch)
    assert set(losses) == {"loss_itc", "loss_i2t"} and len(teacher.asked) == 1
    image_rows, text_rows = (x.view(5, 4) for x in teacher.asked[0])
    assert (image_rows == torch.arange(5).view(-1, 1)).all() and (text_rows[:, 0] == torch.arange(5)).all()
    assert (text_rows[:, 1:] != torch.arange(5).view(-1, 1)).all()
    spec = dict(student=dict(type="DualEncoder", model_name="xmodal-tiny-clip"), teacher=dict(),
                loss=dict(type="DCDLoss"))
    with pytest.raises(ValueError, match=r"RetrievalDistiller: candidates='foo'; expected one of \('hard', 'random'\)"):
        RetrievalDistiller(**spec, candidates="foo")
    with pytest.raises(ValueError, match=r"directions must be a non-empty subset of \('i2t', 't2i'\)"):
        RetrievalDistiller(**spec, directions="x2y")
