"""End to end on digits-av: tools/train.py and tools/test.py as a user runs them, the student-only
checkpoint, determinism, and resume after an interruption."""

import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from tests.conftest import REPO
from xmodal.apis import train as train_api
from xmodal.apis.config import load_config
from xmodal.engine.checkpoint import load_checkpoint_file
from xmodal.registry import HOOKS

pytestmark = pytest.mark.slow


def _tool(*args, cwd=REPO):
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_train_kd_then_test_student_only_checkpoint(tmp_path, digits_av_root):
    teacher_dir, kd_dir = tmp_path / "teacher", tmp_path / "kd"
    _tool("tools/train.py", "configs/digits_av/teacher_fusion.py", "--work-dir", str(teacher_dir),
          "--cfg-options", "train_cfg.max_epochs=2")
    _tool("tools/train.py", "configs/digits_av/kd_image_from_fusion.py", "--work-dir", str(kd_dir),
          "--cfg-options", "train_cfg.max_epochs=2", f"model.teachers.t_fusion.checkpoint={teacher_dir}")
    assert (kd_dir / "student_best.pth").is_file() and (kd_dir / "student_last.pth").is_file()
    student_keys = load_checkpoint_file(kd_dir / "student_best.pth")["state_dict"].keys()
    assert not any(k.startswith("teachers.") for k in student_keys)

    plain_json, full_json = tmp_path / "plain.json", tmp_path / "full.json"
    _tool("tools/test.py", "configs/digits_av/student_image.py", str(kd_dir / "student_best.pth"),
          "--out", str(plain_json), "--work-dir", str(tmp_path / "t1"))
    _tool("tools/test.py", "configs/digits_av/kd_image_from_fusion.py", str(kd_dir), "--out", str(full_json),
          "--work-dir", str(tmp_path / "t2"), "--cfg-options", f"model.teachers.t_fusion.checkpoint={teacher_dir}")
    plain, full = json.loads(plain_json.read_text()), json.loads(full_json.read_text())
    assert plain["metrics"] == full["metrics"]  # same weights, same predictions on the test split
    assert set(plain["metrics"]) == {"accuracy", "macro_f1", "kappa"}


def test_wrong_checkpoint_for_config_is_a_clear_error(tmp_path, digits_av_root):
    teacher_dir = tmp_path / "teacher"
    _tool("tools/train.py", "configs/digits_av/student_audio.py", "--work-dir", str(teacher_dir),
          "--cfg-options", "train_cfg.max_epochs=1")
    result = subprocess.run([sys.executable, "tools/test.py", "configs/digits_av/student_image.py", str(teacher_dir),
                             "--work-dir", str(tmp_path / "t")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "does not match the model's config" in result.stderr and "missing keys" in result.stderr


class _Interrupt(Exception):
    pass


@HOOKS.register_module(force=True)
class InterruptAfterEpoch(Hook):
    """Stands in for a crash: stops the run once the checkpoint of ``epoch`` is on disk."""

    priority = "LOWEST"

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_val_epoch(self, runner, metrics=None) -> None:  # xmodal writes an epoch's checkpoint after its validation
        if runner.epoch == self.epoch:
            raise _Interrupt


def _run(work_dir, interrupt_at=None):
    options = {"train_cfg.max_epochs": 4, "default_hooks.checkpoint.max_keep_ckpts": 4}
    cfg = load_config("configs/digits_av/student_image.py", options, str(work_dir))
    if interrupt_at is not None:
        cfg.custom_hooks = [*cfg.custom_hooks, dict(type="InterruptAfterEpoch", epoch=interrupt_at)]
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    metrics = runner.val_loop.run()
    return {k: v.clone() for k, v in model.state_dict().items()}, metrics


def test_same_seed_same_metrics_and_resume_matches_uninterrupted(tmp_path, digits_av_root, monkeypatch):
    monkeypatch.chdir(REPO)
    weights_a, metrics_a = _run(tmp_path / "a")
    weights_b, metrics_b = _run(tmp_path / "b")
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)

    with pytest.raises(_Interrupt):
        _run(tmp_path / "c", interrupt_at=2)
    assert (tmp_path / "c" / "epoch_2.pth").is_file() and not (tmp_path / "c" / "epoch_3.pth").exists()
    args = train_api.parse_args(["configs/digits_av/student_image.py", "--work-dir", str(tmp_path / "c"), "--resume",
                                 "--cfg-options", "train_cfg.max_epochs=4"])
    runner = train_api.build_runner(args)
    model = runner.train()
    assert runner.epoch == 4
    weights_c = model.state_dict()
    assert all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)
    assert runner.val_loop.run() == metrics_a
