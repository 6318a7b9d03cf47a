"""The official AV-MNIST networks: output shapes, parameter counts derived from the official layer
sizes, the configs' models, and the MST-Distill mask layers at their official widths."""

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import REPO
from xmodal.registry import MODELS

init_default_scope("xmodal")


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _model(config, key="model"):
    return MODELS.build(Config.fromfile(str(REPO / config))[key])


def test_parameter_counts_match_the_official_networks():
    # LeNet-5: conv1 156 + conv2 2,416 + conv3 48,120 + fc1 10,164 + fc2 850
    assert _count(_model("configs/avmnist/student_image.py")) == 61_706
    # ThreeLayerCNN-A: convs 320 + 18,496 + 73,856, fc1 25,088·10 + 10
    assert _count(_model("configs/avmnist/student_audio.py")) == 343_562
    # CNN-I: LeNet-5 trunk 60,856 + five-layer CNN 1,568,000 + fc1 596·298 + 298 + fc2 2,990
    assert _count(_model("configs/avmnist/teacher_fusion.py")) == 1_809_752


def test_configs_build_and_run_on_a_batch():
    batch = {"image": torch.randn(3, 1, 28, 28), "audio": torch.randn(3, 1, 112, 112), "label": torch.tensor([0, 4, 9])}
    for name in ("teacher_fusion", "student_image", "student_audio"):
        out = _model(f"configs/avmnist/{name}.py")(mode="tensor", **batch)
        assert out["logits"].shape == (3, 10)
    cfg = Config.fromfile(str(REPO / "configs/avmnist/kd_image_from_fusion.py"))
    assert cfg.model.type == "Distiller" and cfg.model.teachers.t_fusion.checkpoint


def test_official_mask_layers_have_the_official_widths():
    cfg = Config.fromfile(str(REPO / "configs/mst_distill/mst_avmnist_image.py"))
    batch = {"image": torch.randn(2, 1, 28, 28), "audio": torch.randn(2, 1, 112, 112)}
    expected = {"fusion.concat": (596,), "fusion.fc1": (298,), "encoders.audio.conv2": (64, 56, 56),
                "encoders.audio.conv3": (128, 28, 28)}
    seen = {}
    for teacher, paths in cfg.mask_layers.items():
        model = MODELS.build(cfg.teachers[teacher]["model"])
        modules = dict(model.named_modules())
        for path in paths:
            modules[path].register_forward_hook(lambda _m, _i, out, p=path: seen.__setitem__(p, tuple(out.shape[1:])))
        model(mode="tensor", **batch)
    assert seen == expected
    assert [s.model.type for s in cfg.stages] == ["MSTCoTrainer", "MSTMaskTrainer", "MSTRouterDistiller"]
    assert [s.train_cfg.max_epochs for s in cfg.stages] == [1, 1, 100]


@pytest.mark.parametrize("size", [28])
def test_lenet5_encoder_rejects_other_sizes(size):
    from xmodal.models.encoders.avmnist import LeNet5Encoder

    assert LeNet5Encoder()(torch.randn(1, 1, size, size)).shape == (1, 84)
    with pytest.raises(ValueError, match="28×28"):
        LeNet5Encoder()(torch.randn(1, 1, 32, 32))
