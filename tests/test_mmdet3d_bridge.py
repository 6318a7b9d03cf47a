"""The optional mmdet3d bridge (MMDet3DDetector). Without mmdet3d only the install hint is tested; with
it (``bash tools/install_det3d.sh``) a CenterPoint-pillar detector trains alone on synthetic scenes,
gives nuScenes records, and teaches a native camera detector through the UniDistill losses."""

import sys

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

from tests.conftest import REPO, small_bev_config
from xmodal.apis.config import load_config
from xmodal.registry import MODELS

CONFIG = REPO / "configs/bev/mmdet3d_centerpoint_pillar_synthetic.py"


def test_missing_mmdet3d_names_the_install_script(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmdet3d", None)  # import mmdet3d -> ImportError
    with pytest.raises(ModuleNotFoundError, match=r"tools/install_det3d\.sh"):
        MODELS.build(dict(type="MMDet3DDetector", detector=dict(type="CenterPoint"), class_names=["car"]))


def _small(work_dir):
    return small_bev_config(CONFIG, work_dir)


@pytest.mark.slow
def test_centerpoint_pillar_trains_and_teaches_a_camera_detector(tmp_path):
    pytest.importorskip("mmdet3d")
    runner = Runner.from_cfg(_small(tmp_path / "m3d"))
    runner.train()
    metrics = runner.test()
    assert {"mAP", "NDS", "car_AP"} <= set(metrics) and 0.0 <= metrics["NDS"] <= 1.0

    model = runner.model.eval()
    batch = next(iter(runner.test_dataloader))
    with torch.no_grad():
        out = model(mode="tensor", **batch)
    b = len(batch["points"])
    assert out["bev_low"].shape == (b, 32, 64, 64)  # the native camera detector's bev_low grid and width
    assert out["bev_high"].shape == (b, 64, 64, 64) and out["heatmap"].shape == (b, 3, 64, 64)
    records = model(mode="predict", **batch)
    assert len(records) == b and all(set(r) >= {"sample_token", "pred_boxes", "gt_boxes"} for r in records)
    for box in (box for r in records for box in r["pred_boxes"]):
        assert len(box["translation"]) == 3 and len(box["size"]) == 3 and len(box["rotation"]) == 4
        assert np.isclose(np.linalg.norm(box["rotation"]), 1.0) and min(box["size"]) > 0

    cfg = _small(tmp_path / "camera_ud")
    camera = load_config(REPO / "configs/bev/camera_synthetic.py").model
    where = dict(bev_range=[0.0, -19.2, -3.0, 38.4, 19.2, 2.0], cell_size=0.6, stride=1)
    cfg.model = dict(
        type="Distiller", student=camera,
        teachers=dict(t_m3d=dict(config=str(CONFIG), checkpoint=str(tmp_path / "m3d"))),
        losses=[dict(type="UniDistillFeatureLoss", name="feature", weight=100.0, student="bev_low",
                     teacher="t_m3d.bev_low", inputs=dict(gt_boxes="batch.gt_boxes"), **where),
                dict(type="UniDistillRelationLoss", name="relation", weight=40.0, student="bev_high",
                     teacher="t_m3d.bev_high", inputs=dict(gt_boxes="batch.gt_boxes"), **where),
                dict(type="UniDistillResponseLoss", name="response", weight=10.0, student="heatmap",
                     teacher="t_m3d.heatmap", inputs=dict(gt_boxes="batch.gt_boxes"), **where)])
    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = runner.message_hub.log_scalars
    names = {"train/loss_feature", "train/loss_relation", "train/loss_response", "train/loss_heatmap"}
    assert names <= set(logs), sorted(logs)
    assert all(np.isfinite(logs[k].current()) and logs[k].current() > 0 for k in names)
