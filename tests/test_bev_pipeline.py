"""BEV end to end on a small synthetic-scenes build: the configs train a LiDAR detector, then a
camera detector with the three UniDistill terms from it; test metrics are nuScenes-style; every
UniDistill path config builds."""

import json

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from tests.conftest import REPO, small_bev_config
from xmodal.distill.unidistill import UNIDISTILL_WEIGHTS, unidistill_terms
from xmodal.engine.checkpoint import load_checkpoint_file


def _plain(value):
    return json.loads(json.dumps(value))  # tuples -> lists, as a config holds them


_small = small_bev_config


@pytest.mark.slow
def test_lidar_teacher_then_unidistill_camera_student(tmp_path):
    lidar_dir, student_dir = tmp_path / "lidar", tmp_path / "camera_ud"
    runner = Runner.from_cfg(_small("configs/bev/lidar_synthetic.py", lidar_dir))
    runner.train()
    metrics = runner.test()
    assert {"mAP", "NDS", "mATE", "car_AP"} <= set(metrics) and 0.0 <= metrics["NDS"] <= 1.0

    cfg = _small("configs/bev/unidistill_camera_from_lidar_synthetic.py", student_dir)
    cfg.model.teachers.t_lidar = dict(config=str(REPO / "configs/bev/lidar_synthetic.py"), checkpoint=str(lidar_dir))
    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = runner.message_hub.log_scalars
    names = {"train/loss_feature", "train/loss_relation", "train/loss_response", "train/loss_heatmap"}
    assert names <= set(logs), sorted(logs)
    assert all(np.isfinite(logs[k].current()) for k in names)
    student = load_checkpoint_file(student_dir / "student_best.pth")["state_dict"]
    assert student and not any(k.startswith("teachers.") for k in student)


@pytest.mark.parametrize("path", sorted(UNIDISTILL_WEIGHTS))
@pytest.mark.parametrize("data", ["synthetic", "nuscenes"])
def test_every_unidistill_path_config_uses_its_weights(path, data):
    cfg = Config.fromfile(str(REPO / f"configs/bev/unidistill_{path}_{data}.py"))
    student, teacher = path.split("_from_")
    assert cfg.model.student.modality == student
    (name, spec), = cfg.model.teachers.items()
    assert Config.fromfile(str(REPO / spec.config)).model.modality == teacher
    weights = {term.name: term.weight for term in cfg.model.losses}
    assert weights == UNIDISTILL_WEIGHTS[path]
    # the same terms as the helper builds for programmatic use
    expected = unidistill_terms(path, name, cfg.model.student.grid)
    assert _plain([t.to_dict() for t in cfg.model.losses]) == _plain(expected)

def test_unidistill_terms_rejects_an_unknown_path():
    with pytest.raises(KeyError, match="unknown path"):
        unidistill_terms("radar_from_lidar", "t", dict(point_cloud_range=(0, 0, 0, 1, 1, 1), cell_size=0.5))


def test_bev_demo_table_and_picture(tmp_path):
    from rich.console import Console

    from xmodal.apis.demo import bev as demo_bev

    scene = {"points": [[10.0, 1.0], [20.0, -3.0]], "gt_boxes": [[10.0, 1.0, 0.0, 4.5, 1.9, 1.6, 0.3]],
             "pred_boxes": [[10.4, 1.2, 0.0, 4.0, 1.8, 1.5, 0.2]], "pred_scores": [0.8], "token": "000001"}
    results = [dict({k: 0.5 for k in demo_bev.KEYS}, method=m, modalities=["lidar"], seed=s, train_seconds=1.0,
                    scene=scene) for m in ("teacher_lidar", "student_camera") for s in (0, 1)]
    rows = demo_bev.aggregate(results)
    assert [r["method"] for r in rows] == ["teacher_lidar", "student_camera"] and rows[0]["NDS_std"] == 0.0
    demo_bev.plot_scenes([r for r in results if r["seed"] == 0], tmp_path / "scene.png")
    assert (tmp_path / "scene.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = Console(record=True, width=200)
    demo_bev.print_table(console, rows)
    assert "student_camera" in console.export_text()
