"""The three-stage MST-Distill recipe end to end on a tiny dataset: tools/train.py over all stages,
--resume and --stage, tools/test.py with the router plot, and the teacher cache's equivalence."""

import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from tests.conftest import REPO, write_tiny_av
from xmodal.apis.stages import stage_config

pytestmark = pytest.mark.slow

CONFIG = """
_base_ = [{runtime!r}]
data_root = {root!r}
image = dict(type="LeNet5", input_size=12, out_dim=8)
audio = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=6)
head = dict(type="ClsHead", num_classes=3)
student = dict(type="ModalityClassifier", encoders=dict(image=image), head=head)
teachers = dict(
    t_fusion=dict(model=dict(type="ModalityClassifier", encoders=dict(image=image, audio=audio),
                             fusion=dict(type="ConcatFusion", out_dim=8), head=head)),
    t_audio=dict(model=dict(type="ModalityClassifier", encoders=dict(audio=audio), head=head)),
)
mask_layers = dict(t_fusion=["fusion.fc1"], t_audio=["encoders.audio.features.5", "encoders.audio.fc"])
expert_names = [f"{{t}}/{{p}}" for t, ps in mask_layers.items() for p in ps]
loader = dict(batch_size=8, num_workers=0, collate_fn=dict(type="default_collate"))
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type="PairedDataset", data_root=data_root, split="train"))
val_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type="PairedDataset", data_root=data_root, split="val"))
test_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                       dataset=dict(type="PairedDataset", data_root=data_root, split="test"))
val_evaluator = dict(type="ClassificationMetric", num_classes=3)
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-3))
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
stages = [
    dict(name="co_training", model=dict(type="MSTCoTrainer", student=student, teachers=teachers),
         train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
         default_hooks=dict(checkpoint=dict(save_best=None))),
    dict(name="mask_training",
         model=dict(type="MSTMaskTrainer", student=student, teachers=teachers, mask_layers=mask_layers),
         train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
         default_hooks=dict(checkpoint=dict(save_best=None)),
         val_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
         custom_hooks=[dict(type="BestMaskHook")]),
    dict(name="routing_distillation",
         model=dict(type="MSTRouterDistiller", student=student, teachers=teachers, mask_layers=mask_layers),
         train_cfg=dict(by_epoch=True, max_epochs=3, val_interval=1),
         default_hooks=dict(checkpoint=dict(save_best="cross_entropy", rule="less")),
         val_evaluator=dict(type="ClassificationMetric", num_classes=3, items=("accuracy", "cross_entropy")),
         test_evaluator=[dict(type="ClassificationMetric", num_classes=3),
                         dict(type="RouterUsageMetric", expert_names=expert_names)],
         custom_hooks=[dict(type="RouterHook"), dict(type="TeacherCacheHook"), dict(type="StudentExportHook")]),
]
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mst")
    root = write_tiny_av(tmp / "data")
    config = tmp / "mst_tiny.py"
    config.write_text(CONFIG.format(runtime=str(REPO / "configs/_base_/default_runtime.py"), root=str(root)))
    return config, tmp / "work"


def _tool(*args, check=True):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=dict(os.environ), capture_output=True,
                            text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_stage_before_its_input_is_a_clear_error(recipe, tmp_path):
    config, _ = recipe
    result = _tool("tools/train.py", config, "--work-dir", tmp_path / "w", "--stage", "3", check=False)
    assert result.returncode != 0
    assert "run stage 2 first" in result.stderr


def test_three_stages_resume_and_test_with_router_plot(recipe, tmp_path):
    config, work = recipe
    _tool("tools/train.py", config, "--work-dir", work)
    for n in (1, 2, 3):
        assert (work / f"stage{n}" / "stage_done.json").is_file()
    masks = torch.load(work / "stage2" / "masks_best.pth", weights_only=True)
    assert len(masks["masks"]) == 3 and all(e >= 1 for e in masks["epoch"])
    usage = [json.loads(line) for line in (work / "stage3" / "router_usage.jsonl").read_text().splitlines()]
    assert [u["epoch"] for u in usage] == [1, 2, 3]
    assert all(sum(u["usage"].values()) == pytest.approx(1.0) for u in usage)
    assert (work / "stage3" / "student_best.pth").is_file()
    assert len(list((work / "stage3" / "teacher_cache").iterdir())) == 1

    resumed = _tool("tools/train.py", config, "--work-dir", work, "--resume")
    assert resumed.stdout.count("already finished: skipped") == 3

    out, plot = tmp_path / "metrics.json", tmp_path / "router.png"
    _tool("tools/test.py", config, work, "--work-dir", tmp_path / "t", "--out", out, "--router-plot", plot)
    metrics = json.loads(out.read_text())["metrics"]
    assert {"accuracy", "router/t_fusion/fusion.fc1"} <= set(metrics)
    assert sum(v for k, v in metrics.items() if k.startswith("router/")) == pytest.approx(1.0)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rerun = _tool("tools/train.py", config, "--work-dir", work, "--stage", "2")
    assert "(stage 2/3: " in rerun.stdout and "epoch 1/" in rerun.stdout
    assert not (work / "stage3" / "stage_done.json").exists()  # its input changed


class _LossRecorder(Hook):
    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append({k: float(v.detach()) for k, v in outputs.items()})


def _first_epoch_losses(config, work, cache: bool, out_dir):
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(work)
    scfg = stage_config(cfg, 3)
    scfg.work_dir = str(out_dir)
    scfg.train_cfg.max_epochs = 1
    scfg.custom_hooks = [dict(type="RouterHook"), dict(type="TeacherCacheHook", enabled=cache)]
    scfg.randomness = dict(seed=7)
    runner = Runner.from_cfg(scfg)
    recorder = _LossRecorder()
    runner.register_hook(recorder)
    runner.train()
    return recorder.losses


def test_cached_and_live_teachers_give_the_same_first_epoch(recipe, tmp_path):
    config, work = recipe
    if not (work / "stage2" / "stage_done.json").is_file():
        _tool("tools/train.py", config, "--work-dir", work, "--stage", "1")
        _tool("tools/train.py", config, "--work-dir", work, "--stage", "2")
    live = _first_epoch_losses(config, work, False, tmp_path / "live")
    cached = _first_epoch_losses(config, work, True, tmp_path / "cached")
    assert len(live) == len(cached) == 4
    for a, b in zip(live, cached):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
