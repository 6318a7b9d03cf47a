"""tools/compare.py end to end on digits-av (one epoch, two entries) and its config checks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from tests.conftest import REPO
from xmodal.apis.compare import _check, main, plot

pytestmark = pytest.mark.slow


def test_compare_writes_tables_and_plot(tmp_path, digits_av_root):
    out = tmp_path / "cmp"
    result = subprocess.run([sys.executable, "tools/compare.py", "configs/compare/digits_av_losses.py", "--epochs", "1",
                             "--only", "no_kd", "dkd", "--out", str(out)], cwd=REPO, env=dict(os.environ),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in summary["aggregate"]] == ["teacher_t_fusion", "teacher_t_audio", "no_kd", "dkd"]
    assert [r["role"] for r in summary["aggregate"]] == ["teacher", "teacher", "student", "student"]
    assert [r["modalities"] for r in summary["aggregate"]] == [["audio", "image"], ["audio"], ["image"], ["image"]]
    assert all(0 <= r["test_acc_mean"] <= 1 and r["epoch_seconds_mean"] > 0 for r in summary["aggregate"])
    assert all(len(r["test_acc_per_seed"]) == 1 for r in summary["aggregate"])
    for run in summary["results"]:  # each run's own log file holds its log
        assert "Epoch(val)" in Path(run["log"]).read_text()
    table = (out / "compare.md").read_text()
    assert table.startswith("| method | role | modality | test acc |") and "| dkd | student | image |" in table
    assert "| teacher_t_fusion | teacher | audio+image |" in table
    assert (out / "compare.png").stat().st_size > 10_000


def test_the_plot_has_integer_epoch_ticks(tmp_path, monkeypatch):
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    history = [{"epoch": e, "train_loss": 1.0 / e, "accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)]
    results = [{"method": m, "seed": 0, "history": history} for m in ("teacher_t", "kd")]
    rows = [{"method": m, "role": role, "test_acc_mean": 0.8, "test_acc_std": 0.0}
            for m, role in (("teacher_t", "teacher"), ("kd", "student"))]
    plot(results, rows, tmp_path / "p.png")
    (fig,) = saved
    for ax in fig.axes[1:]:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_entries_need_unique_names(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("student_config='x.py'\nteachers=dict(t=1)\nentries=[dict(name='a', losses=[]), dict(losses=[])]\n")
    with pytest.raises(ValueError, match="unique 'name'"):
        _check(Config.fromfile(str(bad)), str(bad))
    bad.write_text("teachers=dict(t=1)\nentries=[]\n")
    with pytest.raises(KeyError, match="student_config"):
        _check(Config.fromfile(str(bad)), str(bad))


@pytest.mark.parametrize("args, message", [
    (["--only", "no_kd", "nope"], r"--only: no entries \['nope'\] in .*digits_av_losses\.py; it has \['no_kd', "),
    (["--seeds", "0"], r"--seeds 0: expected a positive integer"),
    (["--epochs", "-1"], r"--epochs -1: expected a positive integer"),
])
def test_bad_arguments_exit_2_with_one_error_line_before_anything_runs(tmp_path, capsys, args, message):
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as stop:
        main([str(REPO / "configs/compare/digits_av_losses.py"), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and re.search(message, line), line
    assert not out.exists()


def test_missing_config_keys_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("teachers=dict(t=1)\nentries=[]\n")
    with pytest.raises(SystemExit) as stop:
        main([str(bad), "--out", str(tmp_path / "cmp")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad}: comparison config needs 'student_config' "
                                               f"(see configs/compare/digits_av_losses.py)")


def test_a_comparison_dataset_field_reaches_every_split_of_every_run():
    from xmodal.apis.compare import apply_dataset
    from xmodal.apis.config import read_config

    spec = read_config(str(REPO / "configs/compare/digits_av_kd_no_distractor.py"))
    assert dict(spec.teachers) == {"t_fusion": "configs/digits_av/teacher_fusion.py"}
    cfg = Config.fromfile(REPO / "configs/digits_av/teacher_fusion.py")
    apply_dataset(cfg, spec)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert tuple(cfg[loader].dataset.distractor_db) == (-120.0, -120.0)
    with pytest.raises(Exception, match="dataset: expected dict"):
        apply_dataset(cfg, Config(dict(dataset=[1])))
