"""Every shipped config loads and builds its model (no forward, no data): configs are the users' API.

Weights the configs point at (teacher checkpoints, local pretrained files) do not exist here, so
teachers are built with random weights and pretrained paths are dropped; a BLIP teacher directory is
replaced by a small BLIP config of the same kind.
"""

from pathlib import Path

import pytest
from mmengine.config import Config

import xmodal.distill  # noqa: F401  (registers the distillers)
import xmodal.models  # noqa: F401
from xmodal.apis.config import load_config
from xmodal.apis.stages import is_staged, stage_config
from xmodal.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.py") if "_base_" not in p.parts)
SMALL_BLIP = dict(
    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                       image_size=32, patch_size=16),
    text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                     vocab_size=49408, encoder_hidden_size=32),
    projection_dim=16, image_text_hidden_size=32)


def _offline(value):
    """The config with weights it cannot have here replaced (see the module docstring)."""
    if isinstance(value, dict):
        value = {k: _offline(v) for k, v in value.items()}
        if value.get("type") == "CrossEncoder" and value.get("pretrained"):
            value.pop("pretrained")
            value["config"] = SMALL_BLIP
            value["tokenizer"] = dict(type="clip", context_length=16)
        elif value.get("type") == "DualEncoder" and value.get("pretrained"):
            value["pretrained"] = None
        if "type" not in value and ("model" in value or "config" in value):  # a teacher spec
            value.pop("checkpoint", None)
            value["allow_random_init"] = True
        value.pop("init_from", None)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_offline(v) for v in value)
    return value


def _models(cfg: Config) -> list[dict]:
    if is_staged(cfg):
        return [stage_config(cfg, n + 1).model for n in range(len(cfg.stages))]
    return [cfg.model]


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_builds(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # teacher specs name their configs relative to the repository root
    if path.parent.name == "compare":  # a list of methods over a student config: the configs it names load
        cfg = Config.fromfile(str(path))
        for named in [cfg.student_config, *cfg.teachers.values()]:
            assert "model" in load_config(ROOT / named)
        return
    cfg = load_config(path)
    if any(m.get("type") == "MMDet3DDetector" for m in _models(cfg)):
        pytest.importorskip("mmdet3d", reason="the mmdet3d bridge is optional (tools/install_det3d.sh)")
    for model_cfg in _models(cfg):
        model = MODELS.build(_offline(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)))
        assert sum(p.numel() for p in model.parameters()) > 0
        del model
