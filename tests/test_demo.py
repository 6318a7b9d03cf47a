import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _demo(tmp_path, *args):
    import os

    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "tools/demo.py", *args, "--out", str(out)], cwd=REPO,
                            env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text()), result.stdout


def test_quick_demo_writes_summary(tmp_path, digits_av_root):
    out, summary, stdout = _demo(tmp_path, "--quick", "--epochs", "1")  # the rows and files, not the figures
    assert summary["dataset"] == "digits-av" and summary["seeds"] == [0] and summary["quick"] is True
    assert summary["epochs"] == 1
    assert summary["labelled"] == [0.1] and summary["teacher_labels"] == "disjoint"
    rows = {r["method"]: r for r in summary["results"]}
    assert set(rows) == {"teacher_fusion", "audio_only", "student_no_kd", "student_kd", "student_kd_multi",
                         "student_mst_distill", "student_dho", "student_no_kd_long"}
    assert [r["method"] for r in summary["aggregate"]] == list(rows)
    assert rows["student_mst_distill"]["modalities"] == ["image"]
    assert rows["teacher_fusion"]["modalities"] == ["audio", "image"]
    assert rows["student_kd"]["modalities"] == ["image"] == rows["student_no_kd"]["modalities"]
    for row in rows.values():
        assert 0.0 <= row["test_acc"] <= 1.0 and 0.0 <= row["test_f1"] <= 1.0 and row["train_seconds"] > 0
    students = [r for m, r in rows.items() if m.startswith("student") and m != "student_no_kd_long"]
    assert rows["student_no_kd_long"]["train_steps"] >= max(r["train_steps"] for r in students)
    gains = {r["method"]: r for r in summary["aggregate"]}
    assert "gain_mean" in gains["student_kd"] and "gain_mean" not in gains["student_no_kd"]
    gain = rows["student_kd"]["test_acc"] - rows["student_no_kd"]["test_acc"]
    assert abs(gains["student_kd"]["gain_mean"] - gain) < 1e-9
    # teachers on the first half with every label; students on the second with 10 % of theirs
    teacher = json.loads((out / "teachers" / "teacher_fusion" / "labelled_ids.json").read_text())
    student = json.loads((out / "labelled_0.1" / "student_kd" / "labelled_ids.json").read_text())
    assert teacher["labelled"] is None and teacher["subset"]["part"] == 0 and student["subset"]["part"] == 1
    assert student["num_labelled"] < 0.15 * student["num_samples"]
    assert (out / "summary.png").stat().st_size > 10_000
    assert "student_mst_distill" in stdout and "gain (pt)" in stdout
    stage3 = out / "labelled_0.1" / "student_mst_distill" / "stage3"
    assert (stage3 / "stage_done.json").is_file() and (stage3 / "router_usage.jsonl").is_file()


def test_demo_sweeps_budgets_with_teachers_on_the_same_labels(tmp_path, digits_av_root):
    out, summary, _ = _demo(tmp_path, "--epochs", "1", "--labelled", "0.05", "0.2", "--teacher-labels", "same",
                            "--methods", "student_kd", "--seeds", "0", "1")
    methods = [(r["method"], r["labelled"]) for r in summary["results"] if r["seed"] == 0]
    assert methods == [("teacher_fusion", 0.05), ("student_no_kd", 0.05), ("student_kd", 0.05),
                       ("teacher_fusion", 0.2), ("student_no_kd", 0.2), ("student_kd", 0.2)]
    kd = [r for r in summary["aggregate"] if r["method"] == "student_kd"]
    assert [r["labelled"] for r in kd] == [0.05, 0.2] and all(r["gain_ci95"] is not None for r in kd)
    teacher = json.loads((out / "seed1" / "labelled_0.2" / "teacher_fusion" / "labelled_ids.json").read_text())
    student = json.loads((out / "seed1" / "labelled_0.2" / "student_kd" / "labelled_ids.json").read_text())
    assert teacher["ids"] == student["ids"]  # the hardest case: the teacher knows the students' labels only


def test_full_label_table_is_one_flag_away(tmp_path, digits_av_root):
    _, summary, _ = _demo(tmp_path, "--epochs", "1", "--full-labels", "--methods", "student_kd")
    assert [r["method"] for r in summary["results"]] == ["teacher_fusion", "student_no_kd", "student_kd"]
    assert summary["labelled"] == [None] and summary["regime"] == "full labels"


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
