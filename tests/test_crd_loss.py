"""CRDLoss against its formula (Tian et al. 2020): a hand-computed NCE value with fixed negatives,
the memory update and the one-time Z, invariances, stability, bad input and a Distiller step."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses.crd import CRDLoss
from xmodal.registry import MODELS

TEMP, MOMENTUM, NUM_DATA = 0.5, 0.3, 3
W_S, B_S = [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]
W_T, B_T = [[1.0, 1.0], [0.0, 1.0]], [0.0, 0.5]
MEM_S = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
MEM_T = [[0.8, 0.6], [-1.0, 0.0], [0.0, -1.0]]
F_S, F_T = [[3.0, 4.0], [1.0, -1.0]], [[1.0, 0.0], [0.0, 2.0]]
INDEX, NEG = [2, 0], [[0, 1], [1, 1]]


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _linear(w, b, x):
    return [sum(wi * xi for wi, xi in zip(row, x)) + bi for row, bi in zip(w, b)]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _tiny_loss():
    loss = CRDLoss(2, 2, NUM_DATA, feat_dim=2, num_negatives=2, temperature=TEMP, momentum=MOMENTUM)
    with torch.no_grad():
        loss.embed_s.weight.copy_(torch.tensor(W_S))
        loss.embed_s.bias.copy_(torch.tensor(B_S))
        loss.embed_t.weight.copy_(torch.tensor(W_T))
        loss.embed_t.bias.copy_(torch.tensor(B_T))
        loss.memory_student.copy_(torch.tensor(MEM_S))
        loss.memory_teacher.copy_(torch.tensor(MEM_T))
    return loss


def _expected_tiny():
    """Plain-math value and Z's of the tiny case: (loss, z_student_anchor, z_teacher_anchor, s, t)."""
    s = [_unit(_linear(W_S, B_S, f)) for f in F_S]
    t = [_unit(_linear(W_T, B_T, f)) for f in F_T]
    k, eps = 2, 1e-7
    c = k / NUM_DATA
    total, zs = 0.0, []
    for anchors, bank in ((s, MEM_T), (t, MEM_S)):
        rows = [[INDEX[b]] + NEG[b] for b in range(2)]
        exps = [[math.exp(_dot(anchors[b], bank[j]) / TEMP) for j in rows[b]] for b in range(2)]
        z = NUM_DATA * sum(sum(r) for r in exps) / 6
        zs.append(z)
        part = 0.0
        for b in range(2):
            p = [e / z for e in exps[b]]
            part += math.log(p[0] / (p[0] + c + eps)) + sum(math.log(c / (q + c + eps)) for q in p[1:])
        total += -part / 2
    return total, zs[0], zs[1], s, t


def test_hand_computed_nce_with_fixed_negatives():
    expected, z_s, z_t, _, _ = _expected_tiny()
    loss = _tiny_loss().eval()
    value = loss(torch.tensor(F_S), torch.tensor(F_T), torch.tensor(INDEX), negatives=torch.tensor(NEG))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert loss.z.tolist() == pytest.approx([z_s, z_t], rel=1e-5)
    # eval mode: the banks stay as they were
    assert torch.equal(loss.memory_student, torch.tensor(MEM_S))
    assert torch.equal(loss.memory_teacher, torch.tensor(MEM_T))


def test_memory_update_rule_and_z_estimated_once():
    _, z_s, z_t, s, t = _expected_tiny()
    loss = _tiny_loss().train()
    loss(torch.tensor(F_S), torch.tensor(F_T), torch.tensor(INDEX), negatives=torch.tensor(NEG))
    for bank, old, emb in ((loss.memory_student, MEM_S, s), (loss.memory_teacher, MEM_T, t)):
        expected = [list(r) for r in old]
        for b, i in enumerate(INDEX):
            expected[i] = _unit([MOMENTUM * o + (1 - MOMENTUM) * e for o, e in zip(old[i], emb[b])])
        torch.testing.assert_close(bank, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    # a second batch neither re-estimates Z nor touches rows outside its index
    before = loss.memory_student.clone()
    loss(torch.randn(2, 2), torch.randn(2, 2), torch.tensor([1, 1]))
    assert loss.z.tolist() == pytest.approx([z_s, z_t], rel=1e-5)
    assert torch.equal(loss.memory_student[[0, 2]], before[[0, 2]])
    assert not torch.equal(loss.memory_student[1], before[1])
    assert loss.memory_student.norm(dim=1)[1].item() == pytest.approx(1.0, abs=1e-6)


def test_state_dict_carries_banks_and_z():
    loss = _tiny_loss().train()
    loss(torch.tensor(F_S), torch.tensor(F_T), torch.tensor(INDEX), negatives=torch.tensor(NEG))
    state = loss.state_dict()
    assert {"memory_student", "memory_teacher", "z"} <= set(state)
    fresh = CRDLoss(2, 2, NUM_DATA, feat_dim=2, num_negatives=2, temperature=TEMP).eval()
    fresh.load_state_dict(state)
    args = (torch.tensor(F_S), torch.tensor(F_T), torch.tensor(INDEX))
    assert fresh(*args, negatives=torch.tensor(NEG)).item() == pytest.approx(
        loss.eval()(*args, negatives=torch.tensor(NEG)).item(), rel=1e-6)
    assert torch.equal(fresh.z, loss.z)


def test_duplicated_batch_gives_the_same_value():
    torch.manual_seed(0)
    base = CRDLoss(6, 5, 20, feat_dim=8, num_negatives=7).eval()
    s, t = torch.randn(4, 6), torch.randn(4, 5)
    index, neg = torch.tensor([3, 7, 0, 19]), torch.randint(0, 20, (4, 7))
    one = copy.deepcopy(base)(s, t, index, neg)
    two = copy.deepcopy(base)(s.repeat(2, 1), t.repeat(2, 1), index.repeat(2), neg.repeat(2, 1))
    assert two.item() == pytest.approx(one.item(), rel=1e-5)


def test_dense_and_gathered_scores_agree_with_gradients_in_training():
    torch.manual_seed(1)
    base = CRDLoss(6, 5, 50, feat_dim=8, num_negatives=9).train()
    s, t = torch.randn(4, 6), torch.randn(4, 5)
    index, neg = torch.tensor([3, 7, 0, 49]), torch.randint(0, 50, (4, 9))
    values, grads, banks = [], [], []
    for ratio in (0.0, math.inf):  # gathered rows, then one dense matmul
        loss = copy.deepcopy(base)
        loss.dense_ratio = ratio
        x = s.clone().requires_grad_()
        value = loss(x, t, index, neg)
        value.backward()  # after the in-place memory update
        values.append(value.item())
        grads.append((x.grad, loss.embed_t.weight.grad))
        banks.append(loss.memory_teacher)
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(banks[0], banks[1])


def test_negatives_follow_the_global_seed_and_allow_replacement():
    base = CRDLoss(4, 4, 5, feat_dim=3, num_negatives=64).eval()  # more negatives than samples
    s, t, index = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 4, 2])
    torch.manual_seed(7)
    a = copy.deepcopy(base)(s, t, index)
    torch.manual_seed(7)
    b = copy.deepcopy(base)(s, t, index)
    c = copy.deepcopy(base)(s, t, index)
    assert a.item() == b.item() and c.item() != a.item()
    torch.manual_seed(3)
    neg = base.sample_negatives(index)
    assert neg.shape == (3, 64) and neg.dtype == torch.long
    assert int(neg.min()) >= 0 and int(neg.max()) <= 4 and len(neg.unique()) == 5


def test_gradients_reach_student_and_heads_not_teacher_feature():
    torch.manual_seed(2)
    loss = CRDLoss(6, 5, 30, feat_dim=8, num_negatives=16).train()
    s, t = torch.randn(4, 6, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    loss(s, t, torch.tensor([1, 2, 3, 4])).backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    assert loss.embed_s.weight.grad.abs().sum() > 0 and loss.embed_t.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_features(dtype):
    torch.manual_seed(3)
    loss = CRDLoss(3, 4, 10, feat_dim=4, num_negatives=32).train()
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]).to(dtype).requires_grad_()
    t = torch.tensor([[1e4, -1e4, 1e4, -1e4], [0.0, 1e4, -1e4, 1e4]]).to(dtype)
    for _ in range(2):  # the second call runs against the updated banks and the fixed Z
        s.grad = None
        value = loss(s, t, torch.tensor([0, 9]))
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(value)
        assert torch.isfinite(s.grad.float()).all() and torch.isfinite(loss.embed_s.weight.grad).all()
    assert torch.isfinite(loss.memory_student).all() and torch.isfinite(loss.z).all()
    assert loss.memory_teacher[[0, 9]].norm(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 5), extra=st.integers(1, 6), feat_dim=st.integers(2, 8), k=st.integers(1, 12),
       temperature=st.floats(0.05, 1.0), seed=st.integers(0, 10_000))
def test_aligned_positive_lowers_the_loss(batch, extra, feat_dim, k, temperature, seed):
    # with Z and the negatives fixed, storing the other side's embedding at the positive's bank row
    # (student embedding == teacher memory and vice versa) raises the positive score to its maximum 1/T
    # and leaves every negative score as it was, so the loss can only go down; it is always > 0
    g = torch.Generator().manual_seed(seed)
    num_data = batch + extra
    torch.manual_seed(seed)
    loss = CRDLoss(5, 3, num_data, feat_dim=feat_dim, num_negatives=k, temperature=temperature).eval()
    order = torch.randperm(num_data, generator=g)
    index, others = order[:batch], order[batch:]
    neg = others[torch.randint(0, len(others), (batch, k), generator=g)]  # never a batch sample
    s, t = torch.randn(batch, 5, generator=g), torch.randn(batch, 3, generator=g)
    with torch.no_grad():
        loss.memory_student.copy_(torch.nn.functional.normalize(torch.randn(num_data, feat_dim, generator=g), dim=1))
        loss.memory_teacher.copy_(torch.nn.functional.normalize(torch.randn(num_data, feat_dim, generator=g), dim=1))
    before = loss(s, t, index, neg).item()
    assert before > 0
    with torch.no_grad():
        es, et = loss.embed(s, t)
        loss.memory_teacher[index] = es
        loss.memory_student[index] = et
    after = loss(s, t, index, neg).item()
    assert 0 < after <= before * (1 + 1e-5) + 1e-6
    # the aligned positive term alone is the smallest the positive's part can be at this Z
    with torch.no_grad():
        loss.memory_teacher[index] = -es
        loss.memory_student[index] = -et
    assert loss(s, t, index, neg).item() > after


def test_registry_builds_it():
    built = MODELS.build(dict(type="CRDLoss", student_dim=4, teacher_dim=6, num_data=10))
    assert isinstance(built, CRDLoss)
    assert built.memory_student.shape == (10, 128) and built.num_negatives == 16384 and built.temperature == 0.07


def test_bad_input():
    loss = CRDLoss(4, 6, 10, feat_dim=3, num_negatives=5)
    s, t, index = torch.randn(2, 4), torch.randn(2, 6), torch.tensor([0, 9])
    with pytest.raises(ValueError, match=r"CRDLoss.*\[0, 9\].*max 10"):
        loss(s, t, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"CRDLoss.*min -1"):
        loss(s, t, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match=r"CRDLoss.*student 5.*student_dim=4"):
        loss(torch.randn(2, 5), t, index)
    with pytest.raises(ValueError, match=r"CRDLoss.*teacher 7.*teacher_dim=6"):
        loss(s, torch.randn(2, 7), index)
    with pytest.raises(ValueError, match=r"CRDLoss.*same batch"):
        loss(s, torch.randn(3, 6), index)
    with pytest.raises(ValueError, match=r"CRDLoss.*same batch"):
        loss(torch.randn(4), t, index)
    with pytest.raises(ValueError, match=r"CRDLoss: index shape \(3,\), expected \(2,\)"):
        loss(s, t, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"CRDLoss: index must be an integer tensor"):
        loss(s, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"CRDLoss: negatives shape \(2, 4\), expected \(2, 5\)"):
        loss(s, t, index, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"CRDLoss: negatives values.*max 12"):
        loss(s, t, index, torch.full((2, 5), 12))
    with pytest.raises(ValueError, match="CRDLoss: temperature"):
        CRDLoss(4, 6, 10, temperature=0.0)
    with pytest.raises(ValueError, match="CRDLoss: momentum"):
        CRDLoss(4, 6, 10, momentum=1.5)
    with pytest.raises(ValueError, match="CRDLoss: num_data"):
        CRDLoss(4, 6, 0)
    with pytest.raises(ValueError, match="CRDLoss: num_negatives"):
        CRDLoss(4, 6, 10, num_negatives=0)


def test_distiller_step_with_batch_index(tmp_path):
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
    term = dict(type="CRDLoss", weight=0.8, student="embedding", teacher="t0.embedding", student_dim=16,
                teacher_dim=20, num_data=8, feat_dim=8, num_negatives=32, inputs=dict(index="batch.index"))
    distiller = Distiller(student=student, teachers=dict(t0=dict(model=teacher, checkpoint=str(path))),
                          losses=[term]).train()
    crd = distiller.loss_modules[0]
    assert isinstance(crd, CRDLoss) and crd.training
    bank_before = crd.memory_student.clone()
    batch = {"image": torch.randn(3, 1, 28, 28), "audio": torch.randn(3, 1, 16, 16),
             "label": torch.tensor([0, 1, 3]), "index": torch.tensor([0, 5, 7])}
    losses = distiller(mode="loss", **batch)
    assert set(losses) == {"loss_ce", "loss_crd_0"} and torch.isfinite(losses["loss_crd_0"])
    sum(losses.values()).backward()
    assert crd.embed_s.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    assert all(p.grad is None for p in distiller.teachers.parameters())
    changed = (crd.memory_student != bank_before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [0, 5, 7]
    assert "loss_modules.0.memory_teacher" in distiller.state_dict()
