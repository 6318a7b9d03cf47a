"""Encoders and configs of the feature-level datasets (VGGSound-50k, CrisisMMD-V2).

Parameter counts are derived by hand from the official layer sizes (MST-Distill models/CPSP.py and
models/MLPs.py): conv = in·out·k + out, BatchNorm = 2·C, linear = in·out + out.
"""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import xmodal.models.encoders.feature_mlp  # noqa: F401  (registers FeatureMLP)
import xmodal.models.encoders.vggsound  # noqa: F401  (registers the VGGSound encoders)
import xmodal.models.mlp_fusion  # noqa: F401  (registers MLPFusion)
from xmodal.models.encoders.feature_mlp import FeatureMLP
from xmodal.models.encoders.vggsound import VGGSoundAudioEncoder, VGGSoundVisualEncoder
from xmodal.registry import MODELS

REPO = Path(__file__).resolve().parents[1]


def _lin(i, o):
    return i * o + o


def _params(module):
    return sum(p.numel() for p in module.parameters())


VISUAL_BRANCH = (512 * 256 * 27 + 256 + 2 * 256) + (256 * 128 * 27 + 128 + 2 * 128) + (128 * 64 * 27 + 64 + 2 * 64)
AUDIO_BRANCH = (10 * 16 * 3 + 16 + 2 * 16) + (16 * 32 * 3 + 32 + 2 * 32) + (32 * 64 * 3 + 64 + 2 * 64)


def test_vggsound_encoders_match_the_official_branch_nets():
    visual, audio = VGGSoundVisualEncoder().eval(), VGGSoundAudioEncoder().eval()
    assert visual.branch_dim == 128 and audio.branch_dim == 256  # 64×2×1×1 and 64×4
    assert _params(visual) == VISUAL_BRANCH + _lin(128, 320) + _lin(320, 160) == 4_738_848
    assert _params(audio) == AUDIO_BRANCH + _lin(256, 320) + _lin(320, 160) == 142_096
    assert visual(torch.rand(2, 10, 7, 7, 512)).shape == (2, 160)
    assert audio(torch.rand(2, 10, 128).half()).shape == (2, 160)  # half-precision storage is accepted
    bare = VGGSoundVisualEncoder(hidden_dims=())
    assert bare.out_dim == 128 and _params(bare) == VISUAL_BRANCH
    with pytest.raises(ValueError, match=r"expected \(batch, 10, 7, 7, 512\)"):
        visual(torch.rand(2, 512, 10, 7, 7))


def test_feature_mlp_matches_the_official_mlps():
    image, text = FeatureMLP(2048, (1024, 512)), FeatureMLP(768, (1024, 512))
    assert [n for n, _ in image.named_children() if n.startswith("fc")] == ["fc1", "fc2"]
    assert _params(image) == _lin(2048, 1024) + _lin(1024, 512) == 2_622_976
    assert _params(text) == _lin(768, 1024) + _lin(1024, 512) == 1_312_256
    assert image(torch.rand(3, 2048)).shape == (3, 512)
    with pytest.raises(ValueError, match=r"expected \(batch, 768\)"):
        text(torch.rand(3, 2048))


BATCHES = {
    "vggsound": lambda n: {"visual": torch.rand(n, 10, 7, 7, 512), "audio": torch.rand(n, 10, 128),
                           "label": torch.tensor([0, 140, 52][:n]), "index": torch.arange(n)},
    "crisismmd": lambda n: {"image": torch.rand(n, 2048), "text": torch.rand(n, 768),
                            "label": torch.tensor([0, 7, 3][:n]), "index": torch.arange(n)},
}
# whole models: official parameter counts (head fc3 included)
OFFICIAL_PARAMS = {
    "configs/vggsound/teacher_fusion.py": VISUAL_BRANCH + AUDIO_BRANCH + _lin(384, 320) + _lin(320, 160)
    + _lin(160, 141),  # DSCNN-VGGS-I
    "configs/vggsound/student_visual.py": VISUAL_BRANCH + _lin(128, 320) + _lin(320, 160) + _lin(160, 141),
    "configs/vggsound/student_audio.py": AUDIO_BRANCH + _lin(256, 320) + _lin(320, 160) + _lin(160, 141),
    "configs/crisismmd/teacher_fusion.py": _lin(2048, 1024) + _lin(1024, 512) + _lin(768, 1024) + _lin(1024, 512)
    + _lin(1024, 512) + _lin(512, 256) + _lin(256, 8),  # MLP-I: 4,593,416
    "configs/crisismmd/student_image.py": _lin(2048, 1024) + _lin(1024, 512) + _lin(512, 8),  # MLP-Vb
    "configs/crisismmd/student_text.py": _lin(768, 1024) + _lin(1024, 512) + _lin(512, 8),  # MLP-Tb
}


@pytest.mark.parametrize("config", sorted(OFFICIAL_PARAMS))
def test_plain_configs_build_with_official_sizes(config):
    cfg = Config.fromfile(str(REPO / config))
    model = MODELS.build(cfg.model).eval()
    assert _params(model) == OFFICIAL_PARAMS[config]
    dataset = config.split("/")[1]
    out = model(**BATCHES[dataset](2))
    assert out["logits"].shape == (2, cfg.model.head.num_classes)
    assert cfg.train_dataloader.dataset.type == "PairedDataset"
    assert cfg.train_dataloader.dataset.data_root == f"data/{dataset}" and cfg.train_dataloader.batch_size == 512


@pytest.mark.parametrize("config", ["configs/vggsound/kd_visual_from_fusion.py",
                                    "configs/crisismmd/kd_image_from_fusion.py"])
def test_kd_configs_build_and_run(config, monkeypatch):
    monkeypatch.chdir(REPO)  # the teacher's config path is relative to the repository
    cfg = Config.fromfile(config)
    for spec in cfg.model.teachers.values():  # no trained teacher here
        spec.update(checkpoint=None, allow_random_init=True)
    model = MODELS.build(cfg.model)
    losses = model(mode="loss", **BATCHES[config.split("/")[1]](2))
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) >= 2


@pytest.mark.parametrize("config, dataset, masks", [
    ("configs/mst_distill/mst_vggsound_visual.py", "vggsound",
     {"t_fusion/fusion.fc1": 320, "t_fusion/fusion.fc2": 160, "t_audio/encoders.audio.fc1": 320,
      "t_audio/encoders.audio.fc2": 160}),
    ("configs/mst_distill/mst_crisismmd_image.py", "crisismmd",
     {"t_fusion/fusion.fc1": 512, "t_fusion/fusion.fc2": 256, "t_text/encoders.text.fc1": 1024,
      "t_text/encoders.text.fc2": 512}),
])
def test_mst_configs_build_and_run_every_stage(config, dataset, masks):
    cfg = Config.fromfile(str(REPO / config))
    assert [s["name"] for s in cfg.stages] == ["co_training", "mask_training", "routing_distillation"]
    assert cfg.expert_names == list(masks)
    for stage in cfg.stages:
        model_cfg = dict(stage["model"])
        if "hidden_factor" in model_cfg:
            assert model_cfg["hidden_factor"] == 2 and model_cfg["num_heads"] == 3  # official
            model_cfg["hidden_factor"] = 64  # the official factor gives 535 M parameters on a 1,024-d layer
        model = MODELS.build(model_cfg)
        for name, paths in cfg.mask_layers.items():  # the masked layers have the official widths
            for path in paths:
                assert model.teachers[name].get_submodule(path).out_features == masks[f"{name}/{path}"]
        torch.manual_seed(0)
        losses = model(mode="loss", **BATCHES[dataset](2))
        assert losses and all(torch.isfinite(v).all() for v in losses.values() if torch.is_tensor(v))

