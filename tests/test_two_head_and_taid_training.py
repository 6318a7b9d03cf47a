"""DHO (two-head student, validation-chosen mix) and TAID (adaptive t) through tools/train.py and
tools/test.py on digits-av."""

import json
import re

import pytest

from tests.test_train_test_tools import _tool
from xmodal.engine.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, digits_av_root):
    out = tmp_path_factory.mktemp("teacher")
    _tool("tools/train.py", "configs/digits_av/teacher_fusion.py", "--work-dir", str(out),
          "--cfg-options", "train_cfg.max_epochs=1")
    return out


def test_dho_picks_the_mix_on_validation_and_keeps_it_in_the_checkpoint(tmp_path, teacher_dir):
    work = tmp_path / "dho"
    _tool("tools/train.py", "configs/digits_av/dho_image_from_fusion.py", "--work-dir", str(work),
          "--cfg-options", "train_cfg.max_epochs=2", f"model.teachers.t_fusion.checkpoint={teacher_dir}")
    logs = "".join(p.read_text() for p in work.rglob("*.log"))
    chosen = re.findall(r"DualHeadCombinerHook: alpha=([0-9.]+) .*beta=([0-9.]+)", logs)
    assert len(chosen) == 2  # once per validation
    state = load_checkpoint_file(work / "student_last.pth")["state_dict"]
    alpha, beta = map(float, chosen[-1])
    assert float(state["combine_alpha"]) == pytest.approx(alpha) and float(state["combine_beta"]) == pytest.approx(beta)
    out = tmp_path / "test.json"
    _tool("tools/test.py", "configs/digits_av/dho_image_from_fusion.py", str(work), "--out", str(out),
          "--work-dir", str(tmp_path / "t"), "--cfg-options", f"model.teachers.t_fusion.checkpoint={teacher_dir}")
    assert 0.0 <= json.loads(out.read_text())["metrics"]["accuracy"] <= 1.0


def test_taid_moves_t_during_training(tmp_path, teacher_dir):
    work = tmp_path / "taid"
    _tool("tools/train.py", "configs/digits_av/taid_image_from_fusion.py", "--work-dir", str(work),
          "--cfg-options", "train_cfg.max_epochs=2", f"model.teachers.t_fusion.checkpoint={teacher_dir}")
    last = sorted(work.glob("epoch_*.pth"))[-1]
    checkpoint = load_checkpoint_file(last)
    t = float(checkpoint["state_dict"]["loss_modules.0.t"])
    assert 0.4 < t <= 1.0  # the linear floor alone puts it at 0.4 + 0.6·(iters − 1)/iters by the end
    assert checkpoint["taid_schedules"]["taid"]["prev_loss"] is not None
