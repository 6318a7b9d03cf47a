"""DHOLoss, the two-head student and the validation-chosen inference mix."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.distill import search_combiner
from xmodal.distill.losses import DHOLoss
from xmodal.models import DualHeadClassifier
from xmodal.models.dual_head import mix_heads


def _softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def _kl(t, s, temp):
    p, q = _softmax([v / temp for v in t]), _softmax([v / temp for v in s])
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_hand_computed_2x3_with_an_unlabelled_sample():
    aux = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.5]]
    main = [[0.5, 0.0, -0.5], [2.0, 1.0, 0.0]]
    target = [2, -1]  # the second sample is unlabelled: distillation only
    temp, lam = 2.0, 0.3
    ce = -math.log(_softmax(main[0])[2])
    kl = [temp * temp * _kl(teacher[i], aux[i], temp) for i in range(2)]
    args = torch.tensor(aux), torch.tensor(teacher), torch.tensor(target), torch.tensor(main)
    # official: one labelled and one unlabelled mean, added
    assert DHOLoss(temp, lam)(*args).item() == pytest.approx(lam * ce + (1 - lam) * (kl[0] + kl[1]), rel=1e-5)
    # the option: one mean over the batch
    value = DHOLoss(temp, lam, kd_reduction="batch")(*args)
    assert value.item() == pytest.approx(lam * ce + (1 - lam) * (kl[0] + kl[1]) / 2, rel=1e-5)


def test_split_reduction_is_the_official_objective():
    """erjui/DHO train_others.py: 0.5·CE(labelled) + 0.5·(KL_batchmean(labelled) + KL_batchmean(unlabelled)),
    each KL T²-scaled; here the two loaders' batches are one batch with −1 on the unlabelled rows."""
    g = torch.Generator().manual_seed(0)
    lab_aux, lab_t, lab_main = (torch.randn(3, 5, generator=g) for _ in range(3))
    unl_aux, unl_t = torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)
    y = torch.tensor([4, 0, 2])
    temp = 2.0

    def kl(s, t):
        return torch.nn.functional.kl_div(torch.log_softmax(s / temp, 1), torch.softmax(t / temp, 1),
                                          reduction="batchmean") * temp * temp

    official = 0.5 * torch.nn.functional.cross_entropy(lab_main, y) + 0.5 * (kl(lab_aux, lab_t) + kl(unl_aux, unl_t))
    order = torch.tensor([5, 0, 6, 1, 7, 2, 3, 4])  # labelled and unlabelled rows interleaved
    aux, t = torch.cat([lab_aux, unl_aux])[order], torch.cat([lab_t, unl_t])[order]
    main = torch.cat([lab_main, torch.randn(5, 5, generator=g)])[order]
    target = torch.cat([y, torch.full((5,), -1)])[order]
    torch.testing.assert_close(DHOLoss()(aux, t, target, main), official)
    # no unlabelled sample in the batch: both reductions agree
    assert DHOLoss()(lab_aux, lab_t, y, lab_main).item() == pytest.approx(
        DHOLoss(kd_reduction="batch")(lab_aux, lab_t, y, lab_main).item(), rel=1e-6)


def test_kd_part_is_zero_when_the_auxiliary_head_matches_the_teacher():
    z = torch.randn(3, 4)
    assert DHOLoss(lam=0.0)(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    main, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    ce = torch.nn.functional.cross_entropy(main, y)
    assert DHOLoss(lam=0.5)(z, z.clone(), y, main).item() == pytest.approx(0.5 * ce.item(), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_at_extreme_logits(dtype):
    aux = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]).to(dtype).requires_grad_()
    main = torch.tensor([[-1e4, 1e4, 0.0], [1e4, 0.0, -1e4]]).to(dtype).requires_grad_()
    t = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -5.0]]).to(dtype)
    value = DHOLoss()(aux, t, torch.tensor([0, 2]), main)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(aux.grad).all() and torch.isfinite(main.grad).all()


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_batch_mean_and_each_head_gets_its_own_gradient(batch, classes, seed):
    g = torch.Generator().manual_seed(seed)
    aux, main = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    t, y = torch.randn(batch, classes, generator=g), torch.randint(0, classes, (batch,), generator=g)
    loss = DHOLoss()
    value = loss(aux, t, y, main).item()
    assert loss(torch.cat([aux, aux]), torch.cat([t, t]), torch.cat([y, y]), torch.cat([main, main])).item() == \
        pytest.approx(value, rel=1e-5)
    aux.requires_grad_(), main.requires_grad_()
    DHOLoss(lam=1.0)(aux, t, y, main).backward()  # λ = 1: labels only, nothing reaches the auxiliary head
    assert aux.grad is None or aux.grad.abs().sum() == 0


def test_bad_input_names_the_loss():
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match="DHOLoss.*main_logits"):
        DHOLoss()(z, z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="DHOLoss: target"):
        DHOLoss()(z, z, torch.tensor([0, 3]), z)
    with pytest.raises(ValueError, match="DHOLoss.*shape"):
        DHOLoss()(z, torch.randn(2, 4), torch.tensor([0, 1]), z)
    with pytest.raises(ValueError, match="DHOLoss: lam"):
        DHOLoss(lam=2)
    with pytest.raises(ValueError, match="DHOLoss: temperature"):
        DHOLoss(temperature=-1)
    with pytest.raises(ValueError, match=r"DHOLoss: kd_reduction='mean'; expected one of \('split', 'batch'\)"):
        DHOLoss(kd_reduction="mean")


def test_mix_heads_matches_the_probability_mixture():
    main, aux = torch.randn(5, 4), torch.randn(5, 4)
    # official evaluate(): probs = α·softmax(outputs_ce) + (1 − α)·softmax(outputs_kd / β)
    expected = 0.3 * torch.softmax(main, 1) + 0.7 * torch.softmax(aux / 2.0, 1)
    torch.testing.assert_close(mix_heads(main, aux, 0.3, 2.0).exp(), expected)
    torch.testing.assert_close(mix_heads(main, aux, 1.0, 2.0), torch.log_softmax(main, 1))
    torch.testing.assert_close(mix_heads(main, aux, 0.0, 2.0), torch.log_softmax(aux / 2.0, 1))


def test_two_head_model_outputs_and_labelled_only_task_loss():
    model = DualHeadClassifier(encoders=dict(image=dict(type="LeNet5", input_size=28, out_dim=16)),
                               head=dict(type="ClsHead", num_classes=4))
    out = model(image=torch.randn(3, 1, 28, 28))
    assert set(out) == set(model.output_keys)
    torch.testing.assert_close(out["logits"], torch.log_softmax(out["logits_main"], 1))  # α = 1 by default
    y = torch.tensor([1, -1, 3])
    expected = torch.nn.functional.cross_entropy(out["logits_main"][[0, 2]], y[[0, 2]])
    assert model.task_loss(out, {"label": y})["loss_ce"].item() == pytest.approx(expected.item())
    model.set_combiner(0.5, 2.0)
    assert set(model.state_dict()) >= {"combine_alpha", "combine_beta"}
    with pytest.raises(ValueError, match="alpha"):
        model.set_combiner(1.5, 1.0)


def test_search_combiner_prefers_the_main_head_on_ties_and_mixes_when_it_helps():
    labels = torch.tensor([0, 1, 2, 0])
    main = torch.nn.functional.one_hot(labels, 3).float() * 5
    assert search_combiner(main, -main, labels, [0.0, 0.5, 1.0], [1.0])[:2] == (1.0, 1.0)
    wrong = torch.nn.functional.one_hot(torch.tensor([1, 1, 1, 1]), 3).float() * 5
    alpha, _, acc = search_combiner(wrong, main, labels, [0.0, 0.5, 1.0], [1.0])
    assert alpha < 1 and acc == 1.0


def test_a_version_1_checkpoint_alpha_is_converted():
    """Version 1 stored the auxiliary head's weight in combine_alpha; loading turns it into the main head's."""
    cfg = dict(encoders=dict(image=dict(type="LeNet5", input_size=28, out_dim=16)),
               head=dict(type="ClsHead", num_classes=4))
    old = DualHeadClassifier(**cfg)
    old.set_combiner(0.2, 2.0)
    state = old.state_dict()
    state._metadata[""]["version"] = 1
    new = DualHeadClassifier(**cfg)
    new.load_state_dict(state)
    assert float(new.combine_alpha) == pytest.approx(0.8) and float(new.combine_beta) == 2.0
    current = DualHeadClassifier(**cfg)
    current.load_state_dict(old.state_dict())  # version 2: unchanged
    assert float(current.combine_alpha) == pytest.approx(0.2)
