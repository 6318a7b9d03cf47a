"""The official AV-MNIST networks: output shapes, parameter counts derived by hand from the official
layer sizes, the configs' models, and the MST-Distill mask layers at their official widths."""

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import xmodal.models.encoders.avmnist  # noqa: F401  (registers the encoders)
from tests.conftest import REPO
from xmodal.registry import MODELS

init_default_scope("xmodal")
BATCH = {"image": torch.randn(3, 1, 28, 28), "audio": torch.randn(3, 1, 112, 112), "label": torch.tensor([0, 4, 9]),
         "index": torch.arange(3)}


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _model(config, key="model"):
    return MODELS.build(Config.fromfile(str(REPO / config))[key])


@pytest.mark.parametrize("name, modality, out_dim, params", [
    # conv1 1·6·25+6 = 156, conv2 6·16·25+16 = 2,416, conv3 16·120·25+120 = 48,120, fc1 120·84+84 = 10,164
    ("LeNet5Encoder", "image", 84, 60_856),
    # conv1 1·32·9+32 = 320, conv2 32·64·9+64 = 18,496, conv3 64·128·9+128 = 73,856; 128·14·14 features
    ("ThreeLayerCNNEncoder", "audio", 25_088, 92_672),
    # + conv4 128·256·9+256 = 295,168, conv5 256·512·9+512 = 1,180,160; global average pool to 512
    ("FiveLayerCNNEncoder", "audio", 512, 1_568_000),
])
def test_encoders_match_the_official_layer_sizes(name, modality, out_dim, params):
    encoder = MODELS.build(dict(type=name))
    assert encoder.out_dim == out_dim and _count(encoder) == params
    assert encoder(BATCH[modality]).shape == (3, out_dim)


def test_encoders_reject_inputs_of_another_size():
    with pytest.raises(ValueError, match="28×28"):
        MODELS.build(dict(type="LeNet5Encoder"))(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="112×112"):
        MODELS.build(dict(type="ThreeLayerCNNEncoder"))(torch.randn(1, 1, 96, 96))


def test_parameter_counts_match_the_official_networks():
    # LeNet5: the encoder's 60,856 + fc2 84·10+10 = 850
    assert _count(_model("configs/avmnist/student_image.py")) == 61_706
    # ThreeLayerCNN-A: the encoder's 92,672 + fc1 25,088·10+10 = 250,890
    assert _count(_model("configs/avmnist/student_audio.py")) == 343_562
    # CNN-I: 60,856 + 1,568,000 + fc1 596·298+298 = 177,906 + fc2 298·10+10 = 2,990
    assert _count(_model("configs/avmnist/teacher_fusion.py")) == 1_809_752


def test_configs_build_and_run_on_a_batch():
    for name in ("teacher_fusion", "student_image", "student_audio"):
        model = _model(f"configs/avmnist/{name}.py")
        assert model(mode="tensor", **BATCH)["logits"].shape == (3, 10)
        assert model(mode="loss", **BATCH)["loss_ce"].isfinite()
    cfg = Config.fromfile(str(REPO / "configs/avmnist/kd_image_from_fusion.py"))
    assert cfg.model.type == "Distiller" and cfg.model.teachers.t_fusion.config == "configs/avmnist/teacher_fusion.py"
    # the teacher is loaded from its trained checkpoint, so only the student is built here
    assert MODELS.build(cfg.model.student)(mode="tensor", **BATCH)["logits"].shape == (3, 10)
    assert cfg.optim_wrapper.optimizer == dict(type="Adam", lr=1e-4) and cfg.train_cfg.max_epochs == 100


def _widths(model, paths):
    seen, modules = {}, dict(model.named_modules())
    for path in paths:
        modules[path].register_forward_hook(lambda _m, _i, out, p=path: seen.__setitem__(p, tuple(out.shape[1:])))
    model(mode="tensor", **BATCH)
    return seen


def test_official_mask_layers_have_the_official_widths():
    cfg = Config.fromfile(str(REPO / "configs/mst_distill/mst_avmnist_image.py"))
    seen = {}
    for teacher, paths in cfg.mask_layers.items():
        seen.update(_widths(MODELS.build(cfg.teachers[teacher]["model"]), paths))
    # official get_MSTmodules, image student: CNN-I (596,), (298,); ThreeLayerCNN-A (64, 56, 56), (128, 28, 28)
    assert seen == {"fusion.concat": (596,), "fusion.fc1": (298,), "encoders.audio.conv2": (64, 56, 56),
                    "encoders.audio.conv3": (128, 28, 28)}
    assert cfg.mask_shapes == {"t_fusion": {"fusion.concat": [596]}}
    # audio student: the LeNet5 auxiliary's conv3 (120, 1, 1) and fc1 (84,)
    lenet = _widths(MODELS.build(cfg.student), ["encoders.image.conv3", "encoders.image.fc1"])
    assert lenet == {"encoders.image.conv3": (120, 1, 1), "encoders.image.fc1": (84,)}


def test_mst_recipe_uses_the_official_schedule_and_stage_one_runs():
    cfg = Config.fromfile(str(REPO / "configs/mst_distill/mst_avmnist_image.py"))
    assert [s.model.type for s in cfg.stages] == ["MSTCoTrainer", "MSTMaskTrainer", "MSTRouterDistiller"]
    assert [s.train_cfg.max_epochs for s in cfg.stages] == [1, 1, 100]
    assert all(s.optim_wrapper.optimizer == dict(type="Adam", lr=1e-4) for s in cfg.stages)
    assert cfg.train_dataloader.batch_size == 512
    # stages 2 and 3 carry ~120 M MaskNet parameters (the 596-wide one alone 106 M): too slow to build here
    losses = MODELS.build(cfg.stages[0].model)(mode="loss", **BATCH)
    assert losses and all(v.isfinite() for v in losses.values())
