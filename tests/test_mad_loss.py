"""MADLoss: a hand-computed entropy-weighted Gram MSE, its invariances (feature scale, orthogonal
rotation, batch order, duplicated batch), the weightings, stability, bad input and a Distiller step."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses.mad import MADLoss, cosine_gram, predictive_entropy, sample_weights
from xmodal.registry import MODELS

F_S = [[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]]  # student: 2-d
F_T = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]  # teacher: 3-d
Z_T = [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]]


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _gram(rows):
    u = [_unit(r) for r in rows]
    return [[sum(a * b for a, b in zip(x, y)) for y in u] for x in u]


def _entropy(z, temp=1.0):
    e = [math.exp(v / temp) for v in z]
    p = [v / sum(e) for v in e]
    return -sum(q * math.log(q) for q in p)


def _row_errors():
    g_s, g_t = _gram(F_S), _gram(F_T)
    return [sum((a - b) ** 2 for a, b in zip(rs, rt)) / len(rs) for rs, rt in zip(g_s, g_t)]


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_hand_computed_entropy_weighted(temp):
    h = [_entropy(z, temp) for z in Z_T]
    expected = sum(hi / sum(h) * e for hi, e in zip(h, _row_errors()))
    value = MADLoss(temperature=temp)(torch.tensor(F_S), torch.tensor(F_T), torch.tensor(Z_T))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_hand_computed_confidence_and_uniform():
    c = [math.log(3) - _entropy(z) for z in Z_T]  # the second sample (uniform prediction) gets weight 0
    expected = sum(ci / sum(c) * e for ci, e in zip(c, _row_errors()))
    s, t, z = torch.tensor(F_S), torch.tensor(F_T), torch.tensor(Z_T)
    assert MADLoss(weighting="confidence")(s, t, z).item() == pytest.approx(expected, rel=1e-5)
    uniform = sum(_row_errors()) / 3
    assert MADLoss(weighting="uniform")(s, t).item() == pytest.approx(uniform, rel=1e-5)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 9, generator=g)
    plain_mse = torch.nn.functional.mse_loss(cosine_gram(a), cosine_gram(b))  # equal weights: the Gram MSE
    assert MADLoss(weighting="uniform")(a, b).item() == pytest.approx(plain_mse.item(), rel=1e-5)
    assert MADLoss()(a, b, torch.zeros(6, 4)).item() == pytest.approx(plain_mse.item(), rel=1e-5)


def test_zero_when_the_student_matches_the_teacher_up_to_scale():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(5, 7, generator=g)
    s = t * torch.rand(5, 1, generator=g).add(0.1) * 30  # a different positive scale per sample
    assert MADLoss()(s, t, torch.randn(5, 3, generator=g)).item() == pytest.approx(0.0, abs=1e-6)


def test_invariances():
    g = torch.Generator().manual_seed(2)
    s, t, z = torch.randn(6, 5, generator=g), torch.randn(6, 8, generator=g), torch.randn(6, 4, generator=g) * 2
    loss = MADLoss()
    base = loss(s, t, z).item()
    q_s, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    q_t, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert loss(s @ q_s, t @ q_t, z).item() == pytest.approx(base, rel=1e-4)  # orthogonal rotations
    scale = torch.rand(6, 1, generator=g) * 100 + 1e-3
    assert loss(s * scale, t * 7.0, z).item() == pytest.approx(base, rel=1e-4)  # feature scale
    perm = torch.randperm(6, generator=g)
    assert loss(s[perm], t[perm], z[perm]).item() == pytest.approx(base, rel=1e-5)  # batch order
    assert loss(s.repeat(2, 1), t.repeat(2, 1), z.repeat(2, 1)).item() == pytest.approx(base, rel=1e-5)
    assert loss(s.view(6, 5, 1), t.view(6, 2, 4), z).item() == pytest.approx(base, rel=1e-6)  # flattened


def test_weights_follow_the_teacher_entropy_and_carry_no_gradient():
    z = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]], requires_grad=True)
    w = sample_weights(z, 3, "entropy")
    h = predictive_entropy(z.detach())
    torch.testing.assert_close(w, h / h.sum())
    assert w.argmax().item() == 1 and w.sum().item() == pytest.approx(1.0) and not w.requires_grad
    s, t = torch.randn(3, 4, requires_grad=True), torch.randn(3, 2, requires_grad=True)
    MADLoss()(s, t, z).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None and z.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_values(dtype):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, 0.0]]).to(dtype).requires_grad_()
    t = torch.tensor([[1e4, -1e4], [1e4, 1e4], [-1e4, 0.0]]).to(dtype)
    certain = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 1e4]]).to(dtype)
    value = MADLoss()(s, t, certain)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(s.grad.float()).all()
    # every teacher prediction certain: the entropy shares are 0/0, the weights fall back to uniform
    torch.testing.assert_close(sample_weights(certain, 3), torch.full((3,), 1 / 3))
    assert value.item() == pytest.approx(MADLoss(weighting="uniform")(s, t).item(), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 7), d_s=st.integers(1, 6), d_t=st.integers(1, 6), classes=st.integers(2, 6),
       temp=st.floats(0.25, 4.0), weighting=st.sampled_from(["entropy", "confidence", "uniform"]),
       seed=st.integers(0, 10_000))
def test_bounded_and_permutation_invariant(batch, d_s, d_t, classes, temp, weighting, seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, d_s, generator=g), torch.randn(batch, d_t, generator=g)
    z = torch.randn(batch, classes, generator=g) * 4
    loss = MADLoss(temp, weighting)
    value = loss(s, t, z)
    w = sample_weights(z, batch, weighting, temp)
    assert (w >= 0).all() and w.sum().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.isfinite(value) and -1e-7 <= value.item() <= 4.0 + 1e-5  # cosines lie in [−1, 1]
    perm = torch.randperm(batch, generator=g)
    assert loss(s[perm], t[perm], z[perm]).item() == pytest.approx(value.item(), rel=1e-4, abs=1e-7)
    if batch == 1:
        assert value.item() == pytest.approx(0.0, abs=1e-6)  # a 1x1 Gram matrix is [1] on both sides


def test_registry_builds_it():
    built = MODELS.build(dict(type="MADLoss"))
    assert isinstance(built, MADLoss) and built.temperature == 1.0 and built.weighting == "entropy"


def test_bad_input():
    s, t, z = torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 5)
    with pytest.raises(ValueError, match="MADLoss: weighting='entropy' needs the teacher's logits"):
        MADLoss()(s, t)
    with pytest.raises(ValueError, match=r"MADLoss: expected teacher logits of shape \(3, classes\), got \(2, 5\)"):
        MADLoss()(s, t, torch.randn(2, 5))
    with pytest.raises(ValueError, match="MADLoss: expected .* same batch"):
        MADLoss()(s, torch.randn(2, 6), z)
    with pytest.raises(ValueError, match="MADLoss: expected .* same batch"):
        MADLoss()(torch.randn(3), t, z)
    assert MADLoss()(torch.randn(0, 4), torch.randn(0, 6), torch.randn(0, 5)).item() == 0.0  # empty batch: 0
    with pytest.raises(ValueError, match="MADLoss: temperature"):
        MADLoss(temperature=0.0)
    with pytest.raises(ValueError, match="MADLoss: weighting must be one of"):
        MADLoss(weighting="inverse")


def test_distiller_step(tmp_path):
    from xmodal.distill import Distiller
    from xmodal.engine.checkpoint import save_checkpoint_file
    from xmodal.models import ModalityClassifier

    image = dict(type="LeNet5", input_size=28, out_dim=16)
    audio = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=12)
    student = dict(type="ModalityClassifier", encoders=dict(image=image), head=dict(type="ClsHead", num_classes=4))
    teacher = dict(type="ModalityClassifier", encoders=dict(image=image, audio=audio),
                   fusion=dict(type="ConcatFusion", out_dim=20), head=dict(type="ClsHead", num_classes=4))
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth"
    save_checkpoint_file({"state_dict": ModalityClassifier(**{k: v for k, v in teacher.items()
                                                              if k != "type"}).state_dict()}, path)
    term = dict(type="MADLoss", student="embedding", teacher="t0.embedding", inputs=dict(teacher_logits="t0.logits"))
    distiller = Distiller(student=student, teachers=dict(t0=dict(model=teacher, checkpoint=str(path))),
                          losses=[term]).train()
    assert isinstance(distiller.loss_modules[0], MADLoss)
    batch = {"image": torch.randn(4, 1, 28, 28), "audio": torch.randn(4, 1, 16, 16),
             "label": torch.tensor([0, 1, 3, 2])}
    losses = distiller(mode="loss", **batch)
    assert set(losses) == {"loss_ce", "loss_mad_0"} and torch.isfinite(losses["loss_mad_0"])
    assert losses["loss_mad_0"].item() > 0
    losses["loss_mad_0"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.encoders.parameters())
    assert all(p.grad is None for p in distiller.teachers.parameters())
