"""TAIDLoss against its formula and TAIDSchedule against the paper's update rule."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill.losses.taid import TAIDLoss, TAIDSchedule


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def _row(s, z, t):
    p = _softmax([(1 - t) * a + t * b for a, b in zip(s, z)])
    q = _softmax(s)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)), -sum(pi * math.log(qi) for pi, qi in zip(p, q))


def test_hand_computed_2x3():
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    z = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]
    loss = TAIDLoss(t=0.3)
    value = loss(torch.tensor(s), torch.tensor(z))
    rows = [_row(s[i], z[i], 0.3) for i in range(2)]
    assert value.item() == pytest.approx((rows[0][0] + rows[1][0]) / 2, rel=1e-5)
    assert loss.last_cross_entropy == pytest.approx((rows[0][1] + rows[1][1]) / 2, rel=1e-5)
    loss.set_t(1.0)  # t = 1 is plain KD at temperature 1
    full = sum(_row(s[i], z[i], 1.0)[0] for i in range(2)) / 2
    assert loss(torch.tensor(s), torch.tensor(z)).item() == pytest.approx(full, rel=1e-5)


def test_zero_when_equal_or_when_t_is_zero():
    s = torch.randn(4, 6)
    assert TAIDLoss(t=0.7)(s, s.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert TAIDLoss(t=0.0)(s, torch.randn(4, 6)).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_flows_only_through_the_student_side():
    s, z = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    TAIDLoss(0.5)(s, z).backward()
    assert z.grad is None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    z = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = TAIDLoss(0.9)(s, z)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 9), t=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_nonnegative_batch_mean_and_shift_invariant(batch, classes, t, seed):
    g = torch.Generator().manual_seed(seed)
    s, z = torch.randn(batch, classes, generator=g) * 3, torch.randn(batch, classes, generator=g) * 3
    loss = TAIDLoss(t)
    value = loss(s, z).item()
    assert value >= -1e-6
    assert loss(torch.cat([s, s]), torch.cat([z, z])).item() == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert loss(s + 5.0, z - 2.0).item() == pytest.approx(value, rel=1e-4, abs=1e-5)


def test_schedule_follows_the_update_rule_by_hand():
    sched = TAIDSchedule(t_start=0.4, t_end=1.0, alpha=0.1, beta=0.5)
    assert sched.step(0.4, 2.0, progress=0.0) == 0.4  # first call only records the loss
    t = sched.step(0.4, 1.0, progress=0.0)
    m = 0.5 * 0.5  # relative change (2 − 1)/2 = 0.5, momentum 0.5·0 + 0.5·0.5
    assert sched.momentum == pytest.approx(m)
    assert t == pytest.approx(0.4 + 0.1 * (1 - 0.4) / (1 + math.exp(-m)))
    # the linear ramp is a floor: late in training t jumps to it
    assert sched.step(t, 1.0, progress=0.5) == pytest.approx(0.7)
    assert TAIDSchedule(adaptive=False).step(0.4, 1.0, 0.25) == 0.4  # first call
    ramp = TAIDSchedule(adaptive=False)
    ramp.step(0.4, 1.0, 0.0)
    assert ramp.step(0.4, 0.5, 0.5) == pytest.approx(0.7)


@settings(max_examples=20, deadline=None)
@given(losses=st.lists(st.floats(0.01, 10.0), min_size=2, max_size=30))
def test_schedule_is_monotone_and_bounded(losses):
    sched, t = TAIDSchedule(alpha=0.05), 0.4
    for i, value in enumerate(losses):
        new = sched.step(t, value, progress=i / len(losses))
        assert t <= new <= 1.0
        t = new


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError, match="TAIDLoss.*shape"):
        TAIDLoss()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="TAIDLoss: t must lie"):
        TAIDLoss(t=1.5)
    with pytest.raises(ValueError, match="t_end"):
        TAIDSchedule(t_start=0.8, t_end=0.5)


def test_hook_moves_t_and_keeps_its_state_in_checkpoints():
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from xmodal.distill.schedules import TAIDHook

    loss = TAIDLoss(t=0.9)
    model = SimpleNamespace(terms=[SimpleNamespace(name="taid_0")], loss_modules=[loss])
    runner = SimpleNamespace(model=model, iter=0, max_iters=10, message_hub=MessageHub.get_instance("taid_test"))
    hook = TAIDHook(terms=["taid_0"], alpha=0.1)
    hook.before_train(runner)
    assert float(loss.t) == pytest.approx(0.4)  # a fresh run starts from t_start
    s, z = torch.randn(4, 3), torch.randn(4, 3)
    ts = []
    for i in range(4):
        runner.iter = i
        loss(s * (1 - 0.2 * i), z)
        hook.after_train_iter(runner, i)
        ts.append(float(loss.t))
    assert ts[0] == pytest.approx(0.4) and ts[-1] > ts[0]
    assert runner.message_hub.get_scalar("train/taid_t/taid_0").current() == pytest.approx(ts[-1])
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    resumed = TAIDHook(terms=["taid_0"], alpha=0.1)
    resumed.after_load_checkpoint(runner, checkpoint)
    assert resumed.schedules["taid_0"] == hook.schedules["taid_0"]
    with pytest.raises(KeyError, match="TAIDHook: no loss term"):
        TAIDHook(terms=["kd_0"]).before_train(runner)


def test_hook_ignores_a_non_finite_value_and_a_batch_the_nan_guard_skipped():
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from xmodal.distill.schedules import TAIDHook

    loss = TAIDLoss()
    model = SimpleNamespace(terms=[SimpleNamespace(name="taid_0")], loss_modules=[loss])
    runner = SimpleNamespace(model=model, iter=0, max_iters=10, message_hub=MessageHub.get_instance("taid_nan"))
    hook = TAIDHook(terms=["taid_0"], alpha=0.1, t_start=0.4)
    hook.before_train(runner)
    schedule = hook.schedules["taid_0"]

    def step(value, outputs=None):
        runner.iter += 1
        loss.last_cross_entropy = value
        hook.after_train_iter(runner, runner.iter, outputs=outputs)
        return float(loss.t), schedule.prev_loss, schedule.momentum

    assert step(2.0) == (pytest.approx(0.4), 2.0, 0.0)  # the first value is only recorded
    assert step(float("nan")) == (pytest.approx(0.4), 2.0, 0.0)
    assert step(float("inf")) == (pytest.approx(0.4), 2.0, 0.0)
    assert step(1.0, outputs={}) == (pytest.approx(0.4), 2.0, 0.0)  # the guard skipped the batch
    assert loss.last_cross_entropy is None  # not read again at the next step
    # the next finite value continues from 2.0 as if the bad steps never happened: r = 0.5, m = 0.01·0.5
    t, prev, momentum = step(1.0, outputs={"loss": torch.tensor(1.0)})
    assert (prev, momentum) == (1.0, pytest.approx(0.005))
    ramp = 0.4 + 0.6 * 5 / 10
    assert t == pytest.approx(max(ramp, 0.4 + 0.1 * 0.6 / (1 + math.exp(-0.005))))


def test_hook_advances_t_on_validation_batches_only_when_asked():
    """Official TAID: the loss's forward updates t in validation_step too, with the validation loss and
    the (frozen) global step. TAIDHook(advance_on_val=True) does the same; the default leaves t alone."""
    from mmengine.logging import MessageHub

    from xmodal.distill.schedules import TAIDHook

    class _Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loss = TAIDLoss()
            self.terms, self.loss_modules = [type("Term", (), {"name": "taid_0"})()], [self.loss]

        def data_preprocessor(self, data, training):
            assert training is False
            return data

        def forward(self, mode, student, teacher):
            assert mode == "loss" and not torch.is_grad_enabled()
            return {"loss_taid_0": self.loss(student, teacher)}

    torch.manual_seed(0)
    batches = [dict(student=torch.randn(4, 3), teacher=torch.randn(4, 3)) for _ in range(3)]
    for advance in (False, True):
        model = _Model().eval()
        runner = type("Runner", (), dict(model=model, iter=5, max_iters=10,
                                         message_hub=MessageHub.get_instance(f"taid_val_{advance}")))()
        hook = TAIDHook(terms=["taid_0"], alpha=0.1, advance_on_val=advance)
        hook.schedules["taid_0"].prev_loss = 2.0  # as after some training steps
        model.loss.set_t(0.5)
        reference, t = TAIDSchedule(alpha=0.1, prev_loss=2.0), 0.5
        for i, batch in enumerate(batches):
            hook.after_val_iter(runner, i, data_batch=batch)
            probe = TAIDLoss(t=t).eval()
            probe(batch["student"], batch["teacher"])
            t = reference.step(t, probe.last_cross_entropy, 5 / 10)  # progress frozen at the training step
        if advance:
            assert float(model.loss.t) == pytest.approx(t) and t > 0.5
            assert hook.schedules["taid_0"] == reference
        else:
            assert float(model.loss.t) == pytest.approx(0.5) and hook.schedules["taid_0"].prev_loss == 2.0
    with pytest.raises(ValueError, match="TAIDHook: advance_on_val must be True or False"):
        TAIDHook(terms=["taid_0"], advance_on_val="yes")
