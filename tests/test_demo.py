import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_quick_demo_writes_summary(tmp_path, digits_av_root):
    import os

    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "tools/demo.py", "--quick", "--out", str(out)], cwd=REPO,
                            env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "digits-av" and summary["seeds"] == [0] and summary["quick"] is True
    rows = {r["method"]: r for r in summary["results"]}
    assert set(rows) == {"teacher_fusion", "audio_only", "student_no_kd", "student_kd", "student_kd_multi",
                         "student_mst_distill"}
    assert [r["method"] for r in summary["aggregate"]] == list(rows)
    assert rows["student_mst_distill"]["modalities"] == ["image"]
    assert rows["teacher_fusion"]["modalities"] == ["audio", "image"]
    assert rows["student_kd"]["modalities"] == ["image"] == rows["student_no_kd"]["modalities"]
    for row in rows.values():
        assert 0.0 <= row["test_acc"] <= 1.0 and 0.0 <= row["test_f1"] <= 1.0 and row["train_seconds"] > 0
        assert len(row["history"]) == summary["epochs"]
    assert (out / "summary.png").stat().st_size > 10_000
    assert "student_mst_distill" in result.stdout and "test acc" in result.stdout
    stage3 = out / "student_mst_distill" / "stage3"
    assert (stage3 / "stage_done.json").is_file() and (stage3 / "router_usage.jsonl").is_file()


def test_retrieval_demo_cli_writes_summary(tmp_path):
    import os

    out = tmp_path / "demo_retrieval"
    result = subprocess.run([sys.executable, "tools/demo.py", "--task", "retrieval", "--epochs", "1", "--methods",
                             "student_itc", "--out", str(out)], cwd=REPO, env=dict(os.environ), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "shapes-captions (synthetic)" and summary["epochs"] == 1
    (row,) = summary["results"]
    assert row["method"] == "student_itc" and len(row["history"]) == 1
    assert 0.0 <= row["mean_recall"] <= 1.0 and row["train_seconds"] > 0
    assert "student_itc" in result.stdout and "Recall@K" in result.stdout


def test_demo_rejects_a_method_of_another_task(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "tools/demo.py", "--task", "retrieval", "--methods", "student_kd",
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --methods: unknown method(s) ['student_kd'] for this task; choose from ['teacher_base_clip', "
        "'student_itc', 'student_cprd', 'student_dcd']"]
    assert not out.exists()  # checked before the output directory or the dataset is made
