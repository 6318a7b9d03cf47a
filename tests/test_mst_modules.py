"""MST-Distill parts against hand-computed values: MaskNets, experts and hooks, the load-balance
loss, the weight schedules, and the losses of each stage."""

import math

import pytest
import torch

from xmodal.distill.losses import LoadBalanceLoss
from xmodal.distill.mst import GateNet, MaskNet1d, MaskNet2d, MSTCoTrainer, MSTMaskTrainer, MSTRouterDistiller
from xmodal.distill.mst.experts import build_experts, expert_logits
from xmodal.distill.mst.masknet import masknet_1d_num_params, masknet_2d_num_params, masknet_hidden_dim
from xmodal.distill.mst.router_distiller import decayed
from xmodal.registry import MODELS

IMAGE = dict(type="LeNet5", input_size=12, out_dim=8)
AUDIO = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=6)
HEAD = dict(type="ClsHead", num_classes=3)
STUDENT = dict(type="ModalityClassifier", encoders=dict(image=IMAGE), head=HEAD)
TEACHERS = dict(
    t_fusion=dict(model=dict(type="ModalityClassifier", encoders=dict(image=IMAGE, audio=AUDIO),
                             fusion=dict(type="ConcatFusion", out_dim=8), head=HEAD)),
    t_audio=dict(model=dict(type="ModalityClassifier", encoders=dict(audio=AUDIO), head=HEAD)),
)
MASK_LAYERS = dict(t_fusion=["fusion.fc1"], t_audio=["encoders.audio.features.5", "encoders.audio.fc"])


def _batch(n=4):
    torch.manual_seed(3)
    return {"image": torch.randn(n, 1, 12, 12), "audio": torch.randn(n, 1, 8, 8), "label": torch.arange(n) % 3,
            "index": torch.arange(n)}


def _kl(p_teacher, p_student):
    """KL(p_teacher ‖ p_student) per row, from probabilities."""
    return (p_teacher * (p_teacher.log() - p_student.log())).sum(1)


# -- MaskNets --------------------------------------------------------------------------------------
def test_masknet_size_matches_the_official_av_mnist_figures():
    # the official fusion teacher's first masked feature is 596 wide: Linear 596 -> 297·596 = 177,012
    assert masknet_hidden_dim(596, 2, 3) == 297
    net = MaskNet1d(596)
    assert net.embed.out_features == 177_012
    assert sum(p.numel() for p in net.parameters()) == masknet_1d_num_params(596) == 106_030_486


@pytest.mark.parametrize("dim", [5, 6, 40, 128])
def test_masknet_parameter_formulas(dim):
    assert sum(p.numel() for p in MaskNet1d(dim).parameters()) == masknet_1d_num_params(dim)
    assert sum(p.numel() for p in MaskNet2d(dim).parameters()) == masknet_2d_num_params(dim)
    assert masknet_hidden_dim(dim) % 3 == 0 and masknet_hidden_dim(dim) >= 3


def test_masknet_shapes_and_range():
    one, two = MaskNet1d(10), MaskNet2d(8)
    m1 = one(torch.randn(4, 10))
    m2 = two(torch.randn(4, 8, 6, 6))
    assert m1.shape == (4, 10) and m2.shape == (4, 8)
    assert ((m1 > 0) & (m1 < 1)).all() and ((m2 > 0) & (m2 < 1)).all()
    assert one(torch.randn(4, 10, 1, 1)).shape == (4, 10)  # (B, C, 1, 1) counts as a vector
    with pytest.raises(ValueError, match="width 10"):
        one(torch.randn(4, 7))


# -- experts and hooks -------------------------------------------------------------------------------
def _teachers():
    from torch import nn

    from xmodal.registry import MODELS

    torch.manual_seed(0)
    return nn.ModuleDict({n: MODELS.build(s["model"]).eval() for n, s in TEACHERS.items()})


def test_expert_multiplies_its_mask_and_removes_the_hook():
    teachers = _teachers()
    experts, masks = build_experts(teachers, MASK_LAYERS)
    assert [e.name for e in experts] == ["t_fusion/fusion.fc1", "t_audio/encoders.audio.features.5",
                                         "t_audio/encoders.audio.fc"]
    assert isinstance(masks[1], MaskNet2d) and isinstance(masks[2], MaskNet1d)
    for mask in masks:  # a mask of ones leaves the teacher unchanged
        torch.nn.init.zeros_(mask.mask.out.weight if isinstance(mask, MaskNet2d) else mask.out.weight)
        torch.nn.init.constant_(mask.mask.out.bias if isinstance(mask, MaskNet2d) else mask.out.bias, 50.0)
    batch = _batch()
    plain = teachers["t_audio"](mode="tensor", **batch)["logits"]
    masked = expert_logits(teachers, masks, experts[2], batch)
    torch.testing.assert_close(masked, plain)
    torch.nn.init.constant_(masks[2].out.bias, -50.0)  # a mask of zeros silences the layer
    silenced = expert_logits(teachers, masks, experts[2], batch)
    head = teachers["t_audio"].head
    torch.testing.assert_close(silenced, head(torch.zeros(4, 6)))
    assert all(not m._forward_hooks for m in teachers.modules())


def test_stacked_masks_keep_earlier_masks_of_the_same_teacher_on():
    experts, _ = build_experts(_teachers(), MASK_LAYERS, stack_masks=True)
    assert [len(e.masks) for e in experts] == [1, 1, 2]
    experts, _ = build_experts(_teachers(), MASK_LAYERS)
    assert [len(e.masks) for e in experts] == [1, 1, 1]


def test_unknown_mask_layer_lists_the_nearest_module_paths():
    with pytest.raises(KeyError, match=r"fusion\.fc1"):
        build_experts(_teachers(), dict(t_fusion=["fusion.fc"]))
    with pytest.raises(KeyError, match="the teachers are"):
        build_experts(_teachers(), dict(t_video=["fc"]))
    with pytest.raises(ValueError, match="mask_shapes"):
        build_experts(_teachers(), dict(t_audio=["encoders.audio.features.2"]))  # a ReLU: width unknown


# -- load balancing and schedules -----------------------------------------------------------------------
def test_load_balance_values_by_hand():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])  # mean gate (0.75, 0.25), importance (1.5, 0.5)
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert LoadBalanceLoss("kl")(probs).item() == pytest.approx(kl / 2, rel=1e-6)  # official: / ways
    assert LoadBalanceLoss("kl", per_way=False)(probs).item() == pytest.approx(kl, rel=1e-6)
    assert LoadBalanceLoss("cv")(probs).item() == pytest.approx(math.sqrt(0.5) / 1.0, rel=1e-6)
    uniform = torch.full((5, 4), 0.25)
    assert LoadBalanceLoss("kl")(uniform).item() == pytest.approx(0.0, abs=1e-7)
    assert LoadBalanceLoss("cv")(uniform).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="mode"):
        LoadBalanceLoss("entropy")
    for per_way in (True, False):  # the CV has no per-way scaling: an explicit per_way is an error
        with pytest.raises(ValueError, match=r"LoadBalanceLoss: per_way=.* only applies to mode='kl'"):
            LoadBalanceLoss("cv", per_way=per_way)


def test_weight_schedules_follow_the_official_code():
    # official: decay after epochs 0, 10, 20, ... (epoch % 10 == 0 at the end of the epoch)
    assert [decayed(1.0, e, 0.9, 10, True) for e in (0, 1, 10, 11, 21)] == pytest.approx([1, .9, .9, .81, .729])
    assert [decayed(1.0, e, 0.5, 30, True) for e in (0, 1, 30, 31, 99)] == pytest.approx([1, .5, .5, .25, .0625])
    assert [decayed(1.0, e, 0.9, 10, False) for e in (0, 9, 10, 20)] == pytest.approx([1, 1, .9, .81])


# -- stage losses ------------------------------------------------------------------------------------
def test_stage1_each_model_gets_ce_plus_kl_towards_the_others():
    torch.manual_seed(0)
    model = MSTCoTrainer(student=STUDENT, teachers=TEACHERS, temperature=2.0).eval()
    batch = _batch()
    losses = model(mode="loss", **batch)
    logits = {n: m(mode="tensor", **batch)["logits"] for n, m in model.members().items()}
    probs = {n: torch.softmax(v.double() / 2.0, 1) for n, v in logits.items()}
    for name in logits:
        ce = torch.nn.functional.cross_entropy(logits[name], batch["label"])
        kl = sum(4.0 * _kl(probs[o], probs[name]).mean() for o in logits if o != name)
        assert losses[f"loss_ce_{name}"].item() == pytest.approx(ce.item(), rel=1e-5)
        assert losses[f"loss_kl_{name}"].item() == pytest.approx(kl.item(), rel=1e-4)


def test_stage1_peers_are_not_detached_unless_asked():
    torch.manual_seed(0)
    model = MSTCoTrainer(student=STUDENT, teachers=TEACHERS)
    model(mode="loss", **_batch())["loss_kl_student"].backward()
    assert any(p.grad is not None for p in model.teachers["t_audio"].parameters())  # official: pulls both
    model = MSTCoTrainer(student=STUDENT, teachers=TEACHERS, detach_peers=True)
    model(mode="loss", **_batch())["loss_kl_student"].backward()
    assert all(p.grad is None for p in model.teachers.parameters())


def test_stage1_with_frozen_pretrained_teachers_trains_the_student_alone(tmp_path):
    torch.manual_seed(0)
    trained = MSTCoTrainer(student=STUDENT, teachers=TEACHERS)
    teachers = {}
    for name, spec in TEACHERS.items():
        path = tmp_path / f"{name}.pth"
        torch.save({"state_dict": trained.teachers[name].state_dict()}, path)
        teachers[name] = dict(spec, checkpoint=str(path))
    model = MSTCoTrainer(student=STUDENT, teachers=teachers, temperature=2.0, train_teachers=False).train()
    assert not any(t.training for t in model.teachers.values())
    batch = _batch()
    losses = model(mode="loss", **batch)
    assert set(losses) == {"loss_ce_student", "loss_kl_student"}
    logits = {n: m(mode="tensor", **batch)["logits"] for n, m in model.members().items()}
    probs = {n: torch.softmax(v.double() / 2.0, 1) for n, v in logits.items()}
    kl = sum(4.0 * _kl(probs[t], probs["student"]).mean() for t in TEACHERS)
    assert losses["loss_kl_student"].item() == pytest.approx(kl.item(), rel=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teachers.parameters())
    for name in TEACHERS:  # the teachers keep their checkpoints' weights
        for key, value in model.teachers[name].state_dict().items():
            assert torch.equal(value, trained.teachers[name].state_dict()[key])
    with pytest.raises(ValueError, match="name no 'checkpoint'"):
        MSTCoTrainer(student=STUDENT, teachers=TEACHERS, train_teachers=False)
    with pytest.raises(ValueError, match="train_teachers"):
        MSTCoTrainer(student=STUDENT, teachers=teachers, train_teachers="no")


def test_stage2_loss_is_kl_from_detached_student_and_trains_masks_only():
    torch.manual_seed(0)
    model = MSTMaskTrainer(student=STUDENT, teachers=TEACHERS, mask_layers=MASK_LAYERS, temperature=4.0).train()
    batch = _batch()
    losses = model(mode="loss", **batch)
    assert list(losses) == ["loss_mask0", "loss_mask1", "loss_mask2"]
    p_student = torch.softmax(model.student(mode="tensor", **batch)["logits"].double() / 4, 1)
    for i, expert in enumerate(model.experts):
        p_masked = torch.softmax(expert_logits(model.teachers, model.masks, expert, batch).double() / 4, 1)
        expected = 16.0 * _kl(p_student, p_masked).mean()
        assert losses[f"loss_mask{i}"].item() == pytest.approx(expected.item(), rel=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.student.parameters())
    assert all(p.grad is None for p in model.teachers.parameters())
    assert all(any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()) for m in model.masks)
    assert not model.teachers.training and not model.student.training and model.masks.training


def test_stage2_task_weight_adds_the_experts_cross_entropy_on_labelled_samples():
    torch.manual_seed(0)
    model = MSTMaskTrainer(student=STUDENT, teachers=TEACHERS, mask_layers=MASK_LAYERS, temperature=4.0,
                           task_weight=0.5).train()
    batch = _batch(6)
    batch["label"] = torch.tensor([0, 1, -1, 2, -1, 1])  # -1: unlabelled, no cross-entropy
    losses = model(mode="loss", **batch)
    p_student = torch.softmax(model.student(mode="tensor", **batch)["logits"].double() / 4, 1)
    for i, expert in enumerate(model.experts):
        logits = expert_logits(model.teachers, model.masks, expert, batch)
        kl = 16.0 * _kl(p_student, torch.softmax(logits.double() / 4, 1)).mean()
        keep = batch["label"] >= 0
        ce = torch.nn.functional.cross_entropy(logits[keep], batch["label"][keep])
        assert losses[f"loss_mask{i}"].item() == pytest.approx((kl + 0.5 * ce).item(), rel=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teachers.parameters())
    with pytest.raises(ValueError, match="task_weight"):
        MSTMaskTrainer(student=STUDENT, teachers=TEACHERS, mask_layers=MASK_LAYERS, task_weight=-1.0)


def _router(**kw):
    torch.manual_seed(0)
    return MSTRouterDistiller(student=STUDENT, teachers=TEACHERS, mask_layers=MASK_LAYERS, **kw).train()


def test_stage3_topk_kd_by_hand():
    model = _router(top_k=2, temperature=1.0)
    student = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    experts = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
                            [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    chosen = torch.tensor([[2, 0], [0, 2]])
    probs = torch.tensor([[0.3, 0.1, 0.6], [0.5, 0.2, 0.3]])
    p_s = torch.softmax(student, 1)
    kl = lambda b, w: _kl(torch.softmax(experts[b, w], 0)[None], p_s[b][None])[0]  # noqa: E731
    expected = ((kl(0, 2) + kl(0, 0)) / 2 + (kl(1, 0) + kl(1, 2)) / 2) / 2
    assert model.routed_kd(student, experts, probs, chosen).item() == pytest.approx(expected.item(), rel=1e-5)
    model.kd_mode = "topk_weighted"  # gate probabilities renormalised over the two selected
    weighted = ((0.6 * kl(0, 2) + 0.3 * kl(0, 0)) / 0.9 + (0.5 * kl(1, 0) + 0.3 * kl(1, 2)) / 0.8) / 2
    assert model.routed_kd(student, experts, probs, chosen).item() == pytest.approx(weighted.item(), rel=1e-5)
    # equal experts: the weighted mode gives the same scale as the uniform one
    same = experts[:, :1].expand(-1, 3, -1)
    model.kd_mode = "topk"
    uniform = model.routed_kd(student, same, probs, chosen).item()
    model.kd_mode = "topk_weighted"
    assert model.routed_kd(student, same, probs, chosen).item() == pytest.approx(uniform, rel=1e-6)


def test_stage3_mixture_kd_is_the_official_gate_weighted_variant():
    """MST-Distill weighted_MTGdistillation_detached: Σ_j g_j·z_j over all experts (detached), then
    T²·KL(softmax(mix/T) ‖ softmax(s/T)), batch mean, T = 4."""
    model = _router(kd_mode="mixture")
    student = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    experts = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
                            [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    probs = torch.tensor([[0.3, 0.1, 0.6], [0.5, 0.2, 0.3]], requires_grad=True)
    mix = [[0.3, 0.2, 1.8], [0.9, 0.5, 0.0]]  # by hand
    p_mix, p_s = torch.softmax(torch.tensor(mix) / 4, 1), torch.softmax(student / 4, 1)
    expected = 16 * _kl(p_mix, p_s).mean()
    value = model.routed_kd(student, experts, probs, torch.tensor([[2], [0]]))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not value.requires_grad  # the mixture is detached: no KD gradient to the gate
    dense = model.routed_kd(student[..., None, None].expand(-1, -1, 2, 2), experts[..., None, None].expand(
        -1, -1, -1, 2, 2), probs, torch.tensor([[2], [0]]))
    assert dense.item() == pytest.approx(expected.item(), rel=1e-5)  # per pixel, averaged


def test_stage3_router_learns_from_load_balance_only_with_official_topk():
    model = _router()
    losses = model(mode="loss", **_batch())
    assert set(losses) == {"loss_ce", "loss_kd", "loss_lb"}
    losses["loss_kd"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.gate.parameters())
    model.zero_grad()
    model(mode="loss", **_batch())["loss_lb"].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.gate.parameters())
    assert any(p.grad is not None for p in model.student.parameters())  # official: gate input not detached
    model = _router(kd_mode="topk_weighted", top_k=2)
    model(mode="loss", **_batch())["loss_kd"].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.gate.parameters())
    for kw in (dict(kd_mode="topk_weighted", top_k=1), dict(kd_mode="mixture")):  # renormalised weight 1; detached
        model = _router(**kw)
        model(mode="loss", **_batch())["loss_kd"].backward()
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.gate.parameters())
    model = _router(detach_gate_input=True)
    model(mode="loss", **_batch())["loss_lb"].backward()
    assert all(p.grad is None for p in model.student.parameters())


def test_stage3_weights_decay_with_the_epoch_and_routes_are_counted():
    model = _router(w_kl=2.0, w_lb=1.0)
    model.set_epoch(11)
    assert model.weights == pytest.approx({"task": 1.0, "kl": 1.0, "lb": 0.81})
    model.route_counts.zero_()
    model(mode="loss", **_batch(6))
    assert int(model.route_counts.sum()) == 6
    records = model.eval()(mode="predict", **_batch(6))
    assert len(records) == 6 and all(len(r["route"]) == 1 for r in records)


def test_router_usage_file_keeps_one_line_per_epoch_across_a_kill_and_resume(tmp_path):
    """The usage line is written before the epoch's checkpoint: a run killed in between repeats the epoch
    after resuming, and a resume from an earlier checkpoint repeats several."""
    import json
    from types import SimpleNamespace

    from xmodal.distill.mst.hooks import RouterHook

    model = SimpleNamespace(expert_names=["a", "b"], weights={"kl": 1.0}, route_counts=torch.zeros(2))
    runner = SimpleNamespace(model=model, rank=0, work_dir=str(tmp_path), epoch=0,
                             logger=SimpleNamespace(info=lambda message: None),
                             visualizer=SimpleNamespace(add_scalars=lambda scalars, step: None))
    hook, path = RouterHook(), tmp_path / "router_usage.jsonl"

    def end_epoch(epoch, counts):
        runner.epoch = epoch
        model.route_counts = torch.tensor(counts, dtype=torch.float64)
        hook.after_train_epoch(runner)
        return [(r["epoch"], r["usage"]["a"]) for r in map(json.loads, path.read_text().splitlines())]

    assert end_epoch(0, [3, 1]) == [(1, 0.75)]
    assert end_epoch(1, [1, 1]) == [(1, 0.75), (2, 0.5)]
    # killed before epoch 2's checkpoint: the resumed run (from epoch_1.pth) trains epoch 2 again
    assert end_epoch(1, [0, 2]) == [(1, 0.75), (2, 0.0)]
    assert end_epoch(2, [2, 0]) == [(1, 0.75), (2, 0.0), (3, 1.0)]
    # resumed from an older checkpoint: the later epochs' lines go
    assert end_epoch(0, [1, 3]) == [(1, 0.25)]
    with open(path, "a") as f:  # a torn last line, as an append-mode writer could leave it
        f.write('{"epoch": 2, "usa')
    assert end_epoch(1, [4, 0]) == [(1, 0.25), (2, 1.0)]


def test_stage3_frozen_parts_and_bad_settings():
    model = _router()
    assert not model.teachers.training and not model.masks.training and model.student.training
    assert all(not p.requires_grad for p in [*model.teachers.parameters(), *model.masks.parameters()])
    with pytest.raises(ValueError, match="top_k"):
        _router(top_k=4)
    with pytest.raises(ValueError, match=r"kd_mode='soft'; expected one of \('topk', 'topk_weighted', 'mixture'\)"):
        _router(kd_mode="soft")


def test_stage3_experts_run_in_slices_with_the_same_logits():
    # large batches go through the experts expert_chunk samples at a time (bounded memory), same logits
    whole, sliced = _router(), _router(expert_chunk=3)
    sliced.load_state_dict(whole.state_dict())
    batch = _batch(8)
    torch.testing.assert_close(sliced.all_expert_logits(batch), whole.all_expert_logits(batch))
    with pytest.raises(ValueError, match="expert_chunk"):
        _router(expert_chunk=0)


def test_gatenet_shapes():
    assert GateNet(10, 4)(torch.randn(3, 10)).shape == (3, 4)


# -- dense (segmentation) students ------------------------------------------------------------------
def test_dense_kd_is_the_per_pixel_kl_averaged_over_pixels():
    from xmodal.distill.losses.kd import soft_kl

    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 5)  # noqa: E731  one row per pixel
    per_pixel = _kl(torch.softmax(flat(t).double() / 2, 1), torch.softmax(flat(s).double() / 2, 1))
    assert soft_kl(s, t, 2.0).item() == pytest.approx(4 * per_pixel.mean().item(), rel=1e-5)
    assert soft_kl(s, t, 2.0, "none").tolist() == pytest.approx((4 * per_pixel.view(2, 12).mean(1)).tolist(), rel=1e-5)


def test_mst_stages_run_on_the_nyu_segmentation_recipe_at_tiny_width(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from tests.conftest import REPO
    from xmodal.apis.stages import stage_config
    from xmodal.registry import MODELS

    init_default_scope("xmodal")
    cfg = Config.fromfile(str(REPO / "configs/mst_distill/mst_nyudv2_rgb.py"))
    cfg.work_dir = str(tmp_path)
    tiny = lambda m: dict(m, width=1 / 16)  # noqa: E731
    batch = {"rgb": torch.randn(2, 3, 64, 64), "depth": torch.randn(2, 1, 64, 64),
             "label": torch.randint(0, 41, (2, 64, 64)), "index": torch.arange(2)}
    for number, expected in ((1, "loss_kl_student"), (2, "loss_mask3"), (3, "loss_lb")):
        model_cfg = stage_config(cfg, number).model
        model_cfg.pop("init_from", None)
        model_cfg.student = tiny(model_cfg.student)
        model_cfg.teachers = {k: dict(model=tiny(v["model"])) for k, v in model_cfg.teachers.items()}
        if "mask_shapes" in model_cfg:  # 64×64 input, width 1/16: 32 channels at 2×2 / 4×4
            model_cfg.mask_shapes = {t: {p: [32, 2, 2] for p in paths} for t, paths in model_cfg.mask_shapes.items()}
        torch.manual_seed(0)
        model = MODELS.build(model_cfg).train()
        losses = model(mode="loss", **batch)
        assert expected in losses and all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
    assert model.gate(torch.randn(2, 41, 64, 64)).shape == (2, 4)


def test_stage2_refuses_a_stage1_checkpoint_of_other_models(tmp_path):
    from xmodal.engine.checkpoint import CheckpointError, save_checkpoint_file

    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    other = dict(t_fusion=TEACHERS["t_fusion"], t_audio=dict(model=dict(TEACHERS["t_audio"]["model"],
                                                                          head=dict(HEAD, num_classes=4))))
    torch.manual_seed(0)
    state = MSTCoTrainer(student=STUDENT, teachers=other).state_dict()
    save_checkpoint_file({"state_dict": state}, stage1 / "epoch_1.pth")
    (stage1 / "last_checkpoint").write_text(str(stage1 / "epoch_1.pth"))
    with pytest.raises(CheckpointError, match=r"teachers\.t_audio\.head\.fc\.weight"):
        MSTMaskTrainer(student=STUDENT, teachers=TEACHERS, mask_layers=MASK_LAYERS, init_from=str(stage1))
    with pytest.raises(CheckpointError, match="run that stage first"):
        MSTMaskTrainer(student=STUDENT, teachers=TEACHERS, mask_layers=MASK_LAYERS, init_from=str(tmp_path / "none"))


def test_a_1x1_conv_map_gets_the_official_1d_masknet():
    """Official get_MSTmodules: LeNet5's conv3, shape (120, 1, 1), gets MaskNet_1d(120, hidden 60, 3 heads):
    embed 120·60·120 + 7,200, attention 4·60² + 4·60, output 61 → 885,901 parameters."""
    lenet = dict(type="ModalityClassifier", encoders=dict(image=dict(type="LeNet5Encoder")), head=dict(
        type="ClsHead", num_classes=10))
    teachers = torch.nn.ModuleDict({"t_image": MODELS.build(lenet)})
    layers = dict(t_image=["encoders.image.conv3"])
    _, masks = build_experts(teachers, layers, dict(t_image={"encoders.image.conv3": [120, 1, 1]}))
    assert isinstance(masks[0], MaskNet1d)
    assert sum(p.numel() for p in masks[0].parameters()) == masknet_1d_num_params(120) == 885_901
    experts, masks = build_experts(teachers, layers)  # from the Conv2d alone: a 2-D mask, which refuses 1×1
    assert isinstance(masks[0], MaskNet2d)
    assert sum(p.numel() for p in masks[0].parameters()) == masknet_2d_num_params(120) == 901_621
    with pytest.raises(ValueError, match=r"120×1×1 map.*mask_shapes=\{teacher: \{path: \[120, 1, 1\]\}\}"):
        expert_logits(teachers, masks, experts[0], {"image": torch.randn(2, 1, 28, 28)})
    # a real 2-D map is unaffected
    assert build_experts(teachers, layers, dict(t_image={"encoders.image.conv3": [120, 2, 2]}))[1][0].__class__ \
        is MaskNet2d


def test_a_mask_on_a_convolution_that_feeds_a_batchnorm_is_warned_about():
    teacher = MODELS.build(dict(type="ModalityClassifier", encoders=dict(audio=AUDIO), head=HEAD))
    teachers = torch.nn.ModuleDict(dict(t_audio=teacher))
    with pytest.warns(UserWarning, match=r"'encoders.audio.features.4': a Conv2d followed by BatchNorm2d.*"
                                         r"Mask 'encoders.audio.features.5' instead"):
        build_experts(teachers, dict(t_audio=["encoders.audio.features.4"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_experts(teachers, dict(t_audio=["encoders.audio.features.5", "encoders.audio.fc"]))
