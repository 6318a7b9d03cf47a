"""RAVDESS encoders and configs against the official models (MST-Distill models/SeqNets.py).

Parameter counts are derived by hand from the official layer sizes: Conv3d = in·out·27 + out,
Conv1d (k=3) = in·out·3 + out, BatchNorm = 2·C, Linear = in·out + out.
"""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import xmodal.models.encoders.ravdess  # noqa: F401  (registers the RAVDESS encoders)
import xmodal.models.mlp_fusion  # noqa: F401  (registers MLPFusion)
from xmodal.models.encoders.ravdess import RAVDESSAudioEncoder, RAVDESSVisualEncoder
from xmodal.registry import MODELS

REPO = Path(__file__).resolve().parents[1]


def _lin(i, o):
    return i * o + o


def _params(module):
    return sum(p.numel() for p in module.parameters())


# VisualBranch: Conv3d 3->6->12->24 with BatchNorm3d; AudioBranch: Conv1d 15->32->128->256 with BatchNorm1d
VISUAL_BRANCH = (3 * 6 * 27 + 6 + 2 * 6) + (6 * 12 * 27 + 12 + 2 * 12) + (12 * 24 * 27 + 24 + 2 * 24)  # 10,332
AUDIO_BRANCH = (15 * 32 * 3 + 32 + 2 * 32) + (32 * 128 * 3 + 128 + 2 * 128) + (128 * 256 * 3 + 256 + 2 * 256)
HEAD = _lin(160, 8)  # fc3


def _batch(n=2, modalities=("video", "audio")):
    batch = {"label": torch.tensor([0, 7, 3][:n]), "index": torch.arange(n)}
    if "video" in modalities:
        batch["video"] = torch.rand(n, 15, 3, 224, 224)
    if "audio" in modalities:
        batch["audio"] = torch.rand(n, 15, 156)
    return batch


def test_encoders_match_the_official_branch_nets():
    torch.manual_seed(0)
    video, audio = RAVDESSVisualEncoder().eval(), RAVDESSAudioEncoder().eval()
    assert video.branch_dim == 24 * 1 * 28 * 28 == 18_816  # official comment: "(batch_size, 320)" is stale
    assert audio.branch_dim == 256 * 5 == 1_280
    assert VISUAL_BRANCH == 10_332 and AUDIO_BRANCH == 113_280
    assert _params(video) == VISUAL_BRANCH + _lin(18_816, 320) + _lin(320, 160) == 6_083_132
    assert _params(audio) == AUDIO_BRANCH + _lin(1_280, 320) + _lin(320, 160) == 574_560
    assert [n for n, _ in video.named_children() if n.startswith("fc")] == ["fc1", "fc2"]  # official names
    with torch.no_grad():
        assert video(torch.rand(2, 15, 3, 224, 224)).shape == (2, 160)
        assert audio(torch.rand(2, 15, 156).half()).shape == (2, 160)  # float16 storage is accepted
    bare_video, bare_audio = RAVDESSVisualEncoder(hidden_dims=()), RAVDESSAudioEncoder(hidden_dims=())
    assert (bare_video.out_dim, bare_audio.out_dim) == (18_816, 1_280)
    assert _params(bare_video) == VISUAL_BRANCH and _params(bare_audio) == AUDIO_BRANCH
    with pytest.raises(ValueError, match=r"expected \(batch, 15, 3, 224, 224\)"):
        video(torch.rand(2, 3, 15, 224, 224))  # the Conv3d layout is made inside, not given
    with pytest.raises(ValueError, match=r"expected \(batch, 15, 156\)"):
        audio(torch.rand(2, 156, 15))
    small = RAVDESSVisualEncoder(frames=8, size=(32, 32), hidden_dims=(16,))
    assert small.branch_dim == 24 * 1 * 4 * 4 and small(torch.rand(1, 8, 3, 32, 32)).shape == (1, 16)


# whole models: the official parameter counts (classifier fc3 included)
OFFICIAL_PARAMS = {
    # DSCNN-I: fc1 over the concatenated 1,280 + 18,816 = 20,096 values
    "configs/ravdess/teacher_fusion.py": VISUAL_BRANCH + AUDIO_BRANCH + _lin(20_096, 320) + _lin(320, 160) + HEAD,
    "configs/ravdess/student_video.py": VISUAL_BRANCH + _lin(18_816, 320) + _lin(320, 160) + HEAD,  # VisualBranchNet
    "configs/ravdess/student_audio.py": AUDIO_BRANCH + _lin(1_280, 320) + _lin(320, 160) + HEAD,  # AudioBranchNet
}


@pytest.mark.parametrize("config", sorted(OFFICIAL_PARAMS))
def test_plain_configs_build_with_official_sizes(config):
    cfg = Config.fromfile(str(REPO / config))
    model = MODELS.build(cfg.model).eval()
    assert _params(model) == OFFICIAL_PARAMS[config]
    with torch.no_grad():
        out = model(**_batch(2))
    assert out["logits"].shape == (2, 8)
    loader = cfg.train_dataloader
    assert loader.dataset.type == "PairedDataset" and loader.dataset.data_root == "data/ravdess"
    assert loader.batch_size == 32 and cfg.optim_wrapper.optimizer == dict(type="Adam", lr=1e-4)
    assert cfg.train_cfg.max_epochs == 100


def test_teacher_fuses_audio_first_as_dscnn_i():
    cfg = Config.fromfile(str(REPO / "configs/ravdess/teacher_fusion.py"))
    model = MODELS.build(cfg.model)
    assert model.fusion.order == ["audio", "video"]
    assert model.fusion.fc1.in_features == 20_096 and model.fusion.fc1.out_features == 320
    assert model.fusion.fc2.out_features == 160 and model.head.fc.in_features == 160


def test_kd_config_builds_and_runs(monkeypatch):
    monkeypatch.chdir(REPO)  # the teacher's config path is relative to the repository
    cfg = Config.fromfile("configs/ravdess/kd_video_from_fusion.py")
    for spec in cfg.model.teachers.values():  # no trained teacher here
        spec.update(checkpoint=None, allow_random_init=True)
    model = MODELS.build(cfg.model)
    losses = model(mode="loss", **_batch(2))
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) >= 2


def test_mst_config_builds_and_runs_every_stage():
    cfg = Config.fromfile(str(REPO / "configs/mst_distill/mst_ravdess_video.py"))
    assert [s["name"] for s in cfg.stages] == ["co_training", "mask_training", "routing_distillation"]
    masks = {"t_fusion/fusion.fc1": 320, "t_fusion/fusion.fc2": 160, "t_audio/encoders.audio.fc1": 320,
             "t_audio/encoders.audio.fc2": 160}  # get_MSTmodules, RAVDESS
    assert cfg.expert_names == list(masks)
    assert [s["train_cfg"]["max_epochs"] for s in cfg.stages] == [1, 1, 100]
    assert all(s["optim_wrapper"]["optimizer"] == dict(type="Adam", lr=1e-4) for s in cfg.stages)
    assert cfg.train_dataloader.batch_size == 32
    for stage in cfg.stages:
        model_cfg = dict(stage["model"])
        if "hidden_factor" in model_cfg:
            assert model_cfg["hidden_factor"] == 2 and model_cfg["num_heads"] == 3  # official
        model = MODELS.build(model_cfg)
        for name, paths in cfg.mask_layers.items():  # the masked layers have the official widths
            for path in paths:
                assert model.teachers[name].get_submodule(path).out_features == masks[f"{name}/{path}"]
        torch.manual_seed(0)
        losses = model(mode="loss", **_batch(2))
        assert losses and all(torch.isfinite(v).all() for v in losses.values() if torch.is_tensor(v))
