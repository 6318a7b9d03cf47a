"""C2KDLoss (Huo et al. 2024): Kendall τ against scipy, a hand-computed 2x3 objective, the selection on
non-target rankings, gradient routing through the proxy heads, stability, bad input and a Distiller step."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from xmodal.distill.losses.c2kd import C2KDLoss, ProxyHead, c2kd_objective, kendall_tau, non_target
from xmodal.registry import MODELS


def _log_softmax(z, temp):
    m = max(v / temp for v in z)
    log_sum = m + math.log(sum(math.exp(v / temp - m) for v in z))
    return [v / temp - log_sum for v in z]


def _kl(a, b, temp):
    """T² · KL(softmax(a/T) ‖ softmax(b/T)) of one sample."""
    la, lb = _log_softmax(a, temp), _log_softmax(b, temp)
    return temp * temp * sum(math.exp(x) * (x - y) for x, y in zip(la, lb))


def _drop(z, y):
    return [v for c, v in enumerate(z) if c != y]


def _sign(v):
    return (v > 0) - (v < 0)


def test_kendall_tau_matches_scipy_without_ties():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 9, 40):
        x, y = torch.randn(6, n, generator=g, dtype=torch.float64), torch.randn(6, n, generator=g, dtype=torch.float64)
        y[0] = x[0] * 3 + 1  # same order: τ = 1
        y[1] = -x[1]  # reversed: τ = −1
        tau = kendall_tau(x, y)
        expected = [kendalltau(x[i].numpy(), y[i].numpy()).statistic for i in range(6)]
        assert tau.tolist() == pytest.approx(expected, abs=1e-12)
        assert tau[0].item() == 1.0 and tau[1].item() == -1.0


def test_kendall_tau_b_with_ties_and_a_constant_row():
    x = torch.tensor([[1.0, 1.0, 2.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([[2.0, 1.0, 1.0, 5.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    tau = kendall_tau(x, y)
    assert tau[0].item() == pytest.approx(kendalltau(x[0].numpy(), y[0].numpy()).statistic, abs=1e-6)
    assert tau[1].item() == 0.0  # scipy: NaN; here "no evidence of agreement", never selected at threshold 0


def test_non_target_keeps_class_order():
    z = torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]])
    assert non_target(z, torch.tensor([1, 3])).tolist() == [[0.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


P_S = [[1.0, 2.0, 0.5], [0.0, -1.0, 2.0]]
P_T = [[0.5, 1.5, -1.0], [0.0, 1.0, 3.0]]
Z_S = [[2.0, 0.0, 1.0], [0.5, 0.5, -0.5]]
Z_T = [[1.0, 3.0, 0.0], [-1.0, 2.0, 1.0]]
TARGET = [1, 2]


def _expected(temp, threshold):
    """(loss, selected) of the 2x3 example in plain Python."""
    total, selected = 0.0, []
    for i in range(2):
        total += _kl(Z_T[i], P_T[i], temp) + _kl(Z_S[i], P_S[i], temp) + _kl(P_S[i], Z_S[i], temp)
        nt_s, nt_t = _drop(P_S[i], TARGET[i]), _drop(P_T[i], TARGET[i])
        tau = _sign(nt_t[0] - nt_t[1]) * _sign(nt_s[0] - nt_s[1])  # τ of two classes: do they agree
        selected.append(tau > threshold)
        if tau > threshold:
            total += _kl(nt_t, nt_s, temp) + _kl(nt_s, nt_t, temp)
    return total / 2, selected


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_hand_computed_2x3(temp):
    # sample 0: non-target (0, 2) ordered the same by both proxies, selected; sample 1: (0, 1) reversed, not
    loss, selected = c2kd_objective(torch.tensor(P_S), torch.tensor(P_T), torch.tensor(Z_S), torch.tensor(Z_T),
                                    torch.tensor(TARGET), temp, 0.0)
    expected, expected_selected = _expected(temp, 0.0)
    assert expected_selected == [True, False]
    assert selected.tolist() == expected_selected
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    none, _ = c2kd_objective(torch.tensor(P_S), torch.tensor(P_T), torch.tensor(Z_S), torch.tensor(Z_T),
                             torch.tensor(TARGET), temp, 1.0)  # τ ≤ 1: nothing passes a strict threshold of 1
    assert none.item() == pytest.approx(_expected(temp, 1.0)[0], rel=1e-5)


def test_zero_when_proxies_and_logits_agree():
    z = torch.randn(5, 7)
    loss, selected = c2kd_objective(z, z.clone(), z.clone(), z.clone(), torch.randint(0, 7, (5,)))
    assert selected.all()  # identical rankings: τ = 1
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_selected_term_ignores_the_target_class():
    g = torch.Generator().manual_seed(4)
    p_s, p_t, z = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    y = torch.tensor([0, 5, 2, 2])

    def selected_part(a, b):
        return (c2kd_objective(a, b, z, z, y, 1.0, -1.0)[0] - c2kd_objective(a, b, z, z, y, 1.0, 1.0)[0]).item()

    before = selected_part(p_s, p_t)
    moved_s, moved_t = p_s.clone(), p_t.clone()
    moved_s[torch.arange(4), y] += 10.0
    moved_t[torch.arange(4), y] -= 7.0
    assert selected_part(moved_s, moved_t) == pytest.approx(before, rel=1e-5, abs=1e-6)


def test_gradient_routing():
    torch.manual_seed(0)
    loss = C2KDLoss(6, 5, 4).train()
    s = torch.randn(8, 6, requires_grad=True)
    t = torch.randn(8, 5, requires_grad=True)
    z_s = torch.randn(8, 4, requires_grad=True)
    z_t = torch.randn(8, 4, requires_grad=True)
    y = torch.randint(0, 4, (8,))
    loss(s, t, y, teacher_logits=z_t, student_logits=z_s).backward()
    assert t.grad is None and z_t.grad is None  # the teacher side is frozen
    assert s.grad.abs().sum() > 0 and z_s.grad.abs().sum() > 0
    for head in (loss.proxy_student, loss.proxy_teacher):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_teacher_proxy_learns_from_the_student_proxy_only_on_selected_samples():
    torch.manual_seed(1)
    loss = C2KDLoss(3, 3, 5).eval()
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.randint(0, 5, (4,))
    with torch.no_grad():
        p_s, p_t = loss.proxies(s, t)
    z_t = p_t.clone()  # teacher logits equal to the teacher proxy: the teacher proxy's own term is at 0
    grads = []
    for threshold in (1.0, -1.0 - 1e-9):  # none selected, then all selected
        loss.krc_threshold = threshold
        loss.zero_grad()
        loss(s, t, y, teacher_logits=z_t, student_logits=torch.randn(4, 5)).backward()
        grads.append(loss.proxy_teacher.fc2.weight.grad.abs().sum().item())
    assert grads[0] == pytest.approx(0.0, abs=1e-6) and grads[1] > 0


def test_duplicated_batch_gives_the_same_value():
    g = torch.Generator().manual_seed(2)
    p_s, p_t, z_s, z_t = (torch.randn(5, 6, generator=g) for _ in range(4))
    y = torch.randint(0, 6, (5,), generator=g)
    one = c2kd_objective(p_s, p_t, z_s, z_t, y)[0]
    two = c2kd_objective(*(x.repeat(2, 1) for x in (p_s, p_t, z_s, z_t)), y.repeat(2))[0]
    assert two.item() == pytest.approx(one.item(), rel=1e-5)
    torch.manual_seed(2)
    base = C2KDLoss(6, 5, 6)
    s, t = torch.randn(5, 6, generator=g), torch.randn(5, 5, generator=g)
    for mode in ("train", "eval"):  # BatchNorm's biased batch variance is the same for a duplicated batch
        module = getattr(copy.deepcopy(base), mode)()
        one = module(s, t, y, teacher_logits=z_t, student_logits=z_s)
        module = getattr(copy.deepcopy(base), mode)()
        two = module(s.repeat(2, 1), t.repeat(2, 1), y.repeat(2), teacher_logits=z_t.repeat(2, 1),
                     student_logits=z_s.repeat(2, 1))
        assert two.item() == pytest.approx(one.item(), rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits_and_features(dtype):
    big = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 1e4, -1e4]])
    p_s = big.clone().to(dtype).requires_grad_()
    p_t = big.flip(1).to(dtype).requires_grad_()
    z_s = (-big).to(dtype).requires_grad_()
    z_t = big.roll(1, 1).to(dtype)
    value, _ = c2kd_objective(p_s, p_t, z_s, z_t, torch.tensor([0, 3]), 1.0, -1.0 - 1e-9)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert all(torch.isfinite(x.grad.float()).all() for x in (p_s, p_t, z_s))
    torch.manual_seed(3)
    loss = C2KDLoss(3, 4, 4).train()
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 1.0, -1e4]]).to(dtype).requires_grad_()
    t = torch.tensor([[1e4, -1e4, 1e4, -1e4], [0.0, 1e4, -1e4, 1e4], [1.0, 2.0, 3.0, 4.0]]).to(dtype)
    value = loss(s, t, torch.tensor([0, 2, 3]), teacher_logits=big.repeat(2, 1)[:3].to(dtype),
                 student_logits=(s[:, :1] * torch.ones(1, 4, dtype=dtype)))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in loss.parameters() if p.grad is not None)


def test_batch_of_one_in_training_and_spatial_features():
    torch.manual_seed(4)
    loss = C2KDLoss(3, 2, 5).train()
    value = loss(torch.randn(1, 3), torch.randn(1, 2), torch.tensor([4]), teacher_logits=torch.randn(1, 5),
                 student_logits=torch.randn(1, 5))
    assert torch.isfinite(value)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 5)  # (B, C, H, W) and (B, C, L): averaged first
    y, z_t, z_s = torch.tensor([0, 1]), torch.randn(2, 5), torch.randn(2, 5)
    pooled = loss.eval()(s.mean((2, 3)), t.mean(2), y, teacher_logits=z_t, student_logits=z_s)
    assert loss(s, t, y, teacher_logits=z_t, student_logits=z_s).item() == pytest.approx(pooled.item(), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(3, 9), threshold=st.floats(-1.0, 1.0),
       temp=st.floats(0.5, 4.0), seed=st.integers(0, 10_000))
def test_nonnegative_and_selection_shrinks_with_the_threshold(batch, classes, threshold, temp, seed):
    g = torch.Generator().manual_seed(seed)
    p_s, p_t, z_s, z_t = (torch.randn(batch, classes, generator=g) * 3 for _ in range(4))
    y = torch.randint(0, classes, (batch,), generator=g)
    tau = kendall_tau(non_target(p_t, y), non_target(p_s, y))
    assert ((tau >= -1 - 1e-6) & (tau <= 1 + 1e-6)).all()
    loss, selected = c2kd_objective(p_s, p_t, z_s, z_t, y, temp, threshold)
    assert torch.equal(selected, tau > threshold)
    higher, higher_selected = c2kd_objective(p_s, p_t, z_s, z_t, y, temp, min(1.0, threshold + 0.3))
    floor, floor_selected = c2kd_objective(p_s, p_t, z_s, z_t, y, temp, 1.0)
    assert not floor_selected.any() and not (higher_selected & ~selected).any()
    assert 0.0 <= floor.item() <= higher.item() + 1e-5 and higher.item() <= loss.item() + 1e-5
    assert torch.isfinite(loss)


def test_proxy_head_matches_the_official_layout():
    head = ProxyHead(84, 10)
    assert [type(m).__name__ for m in head.children()] == ["Linear", "BatchNorm1d", "Linear"]
    assert head.fc1.weight.shape == (84, 84) and head.fc2.weight.shape == (10, 84)
    assert head.fc1.bias is None and head.fc2.bias.shape == (10,)


def test_registry_builds_it():
    built = MODELS.build(dict(type="C2KDLoss", student_dim=84, teacher_dim=128, num_classes=10))
    assert isinstance(built, C2KDLoss)
    assert built.temperature == 1.0 and built.krc_threshold == 0.0
    assert built.proxy_teacher.fc1.weight.shape == (128, 128)


def test_bad_input():
    loss = C2KDLoss(4, 6, 3)
    s, t, y, z = torch.randn(2, 4), torch.randn(2, 6), torch.tensor([0, 2]), torch.randn(2, 3)
    with pytest.raises(ValueError, match="C2KDLoss: needs the teacher's and the student's logits"):
        loss(s, t, y, teacher_logits=z)
    with pytest.raises(ValueError, match=r"C2KDLoss: target values must lie in \[0, 2\].*max 3"):
        loss(s, t, torch.tensor([0, 3]), teacher_logits=z, student_logits=z)
    with pytest.raises(ValueError, match="C2KDLoss: needs the class labels"):
        loss(s, t, None, teacher_logits=z, student_logits=z)
    with pytest.raises(ValueError, match=r"C2KDLoss: expected student and teacher logits.*\(2, 4\)"):
        loss(s, t, y, teacher_logits=torch.randn(2, 4), student_logits=z)
    with pytest.raises(ValueError, match=r"C2KDLoss: logits \(2, 4\).*num_classes=3"):
        loss(s, t, y, teacher_logits=torch.randn(2, 4), student_logits=torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"C2KDLoss: feature widths \(student 5, teacher 6\).*student_dim=4"):
        loss(torch.randn(2, 5), t, y, teacher_logits=z, student_logits=z)
    with pytest.raises(ValueError, match="C2KDLoss: expected .* same batch"):
        loss(s, torch.randn(3, 6), y, teacher_logits=z, student_logits=z)
    with pytest.raises(ValueError, match="C2KDLoss: temperature"):
        C2KDLoss(4, 6, 3, temperature=0.0)
    with pytest.raises(ValueError, match="C2KDLoss: num_classes must be an integer >= 3"):
        C2KDLoss(4, 6, 2)
    with pytest.raises(ValueError, match="C2KDLoss: krc_threshold"):
        C2KDLoss(4, 6, 3, krc_threshold=1.5)
    with pytest.raises(ValueError, match="C2KDLoss: student_dim"):
        C2KDLoss(0, 6, 3)


def test_distiller_step_trains_the_proxies_not_the_teacher(tmp_path):
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
    term = dict(type="C2KDLoss", student="embedding", teacher="t0.embedding", student_dim=16, teacher_dim=20,
                num_classes=4, inputs=dict(teacher_logits="t0.logits", student_logits="student.logits"))
    distiller = Distiller(student=student, teachers=dict(t0=dict(model=teacher, checkpoint=str(path))),
                          losses=[term]).train()
    c2kd = distiller.loss_modules[0]
    assert isinstance(c2kd, C2KDLoss) and c2kd.training
    batch = {"image": torch.randn(3, 1, 28, 28), "audio": torch.randn(3, 1, 16, 16), "label": torch.tensor([0, 1, 3])}
    losses = distiller(mode="loss", **batch)
    assert set(losses) == {"loss_ce", "loss_c2kd_0"} and torch.isfinite(losses["loss_c2kd_0"])
    sum(losses.values()).backward()
    for head in (c2kd.proxy_student, c2kd.proxy_teacher):
        assert head.fc2.weight.grad is not None and head.fc2.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    assert all(p.grad is None for p in distiller.teachers.parameters())
    assert "loss_modules.0.proxy_teacher.bn.running_mean" in distiller.state_dict()


def test_proxy_init_as_the_official_proxy():
    """The authors' proxies (huofushuo/C2KD Tea/Stu) put Kaiming fan-out on the 1×1 conv only: the
    last Linear keeps PyTorch's default init, U(±1/√d) weights and bias. Same RNG draws as building
    the three layers plainly, then re-initialising the first."""
    d, c = 64, 10
    torch.manual_seed(3)
    head = ProxyHead(d, c)
    torch.manual_seed(3)
    fc1 = torch.nn.Linear(d, d, bias=False)
    torch.nn.BatchNorm1d(d)
    fc2 = torch.nn.Linear(d, c)
    torch.nn.init.kaiming_normal_(fc1.weight, mode="fan_out", nonlinearity="relu")
    assert torch.equal(head.fc2.weight, fc2.weight) and torch.equal(head.fc2.bias, fc2.bias)
    assert torch.equal(head.fc1.weight, fc1.weight) and head.fc1.bias is None
    bound = 1 / math.sqrt(d)
    assert head.fc2.weight.abs().max() <= bound and head.fc2.bias.abs().max() <= bound
    assert head.fc2.bias.abs().sum() > 0  # not the zero bias of a Kaiming re-init
    # fan_out Kaiming on fc1: std √(2 / d)
    assert head.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / d), rel=0.1)
