"""tools/train.py's console: a short header, a progress bar, one line per validation; the full dumps in the
log file (--verbose prints them); no warning a user can do nothing about; an error is the last line."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO
from tests.test_bad_inputs import _task
from xmodal.apis import train as train_api


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100")
    return subprocess.run([sys.executable, "tools/train.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


def test_first_screen_of_the_readme_command_is_short_and_the_dumps_go_to_the_log(tmp_path, digits_av_root):
    result = _run("configs/digits_av/student_image.py", "--work-dir", str(tmp_path / "w"),
                  "--cfg-options", "train_cfg.max_epochs=2")
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) <= 25, result.stdout
    assert lines[0] == "xmodal train configs/digits_av/student_image.py"
    assert not [line for line in lines if "WARNING" in line or "Warning" in line], result.stdout
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(" loss " in line and "val accuracy" in line for line in epochs)
    assert lines[-1].startswith("trained 2 epochs in ")
    (log,) = (tmp_path / "w").glob("*/*.log")
    text = log.read_text()
    assert "System environment" in text and "Config:" in text and "Hooks will be executed" in text


def test_verbose_prints_the_dumps(tmp_path):
    ws = _task(tmp_path / "ws")
    result = _run(str(ws / "student.py"), "--work-dir", str(tmp_path / "w"), "--verbose")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Hooks will be executed" in result.stdout and "Config:" in result.stdout


def test_the_header_shows_each_teachers_measured_val_accuracy(tmp_path, capsys):
    ws = _task(tmp_path / "ws")
    train_api.main([str(ws / "kd.py"), "--work-dir", str(tmp_path / "w"), "--cfg-options",
                    "train_dataloader.dataset.modalities=[a,b]", "val_dataloader.dataset.modalities=[a,b]",
                    "experiment_name=header"])
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "teacher" in line and "t0" in line]
    accuracy = float(line.rsplit(" ", 1)[1])
    assert line.strip().startswith("teacher   t0: val accuracy") and 0 <= accuracy <= 1


def test_an_error_is_the_last_thing_printed(tmp_path):
    ws = _task(tmp_path / "ws")
    result = _run(str(ws / "kd.py"), "--work-dir", str(tmp_path / "w"))  # C17: the teacher's modality is not loaded
    assert result.returncode == 2
    assert result.stdout.strip().splitlines()[-1].startswith("error: model.teachers.t0: teacher 't0' reads")


def test_a_terminal_shows_a_progress_bar_with_loss_and_eta(tmp_path):
    import io

    from rich.console import Console

    from xmodal.engine.console import ConsoleProgressHook

    ws = _task(tmp_path / "ws")
    args = train_api.parse_args([str(ws / "student.py"), "--work-dir", str(tmp_path / "w"), "--cfg-options",
                                 "experiment_name=bar", "train_cfg.max_epochs=2"])
    runner = train_api.build_runner(args)
    (hook,) = [h for h in runner.hooks if isinstance(h, ConsoleProgressHook)]
    screen = io.StringIO()
    hook.console = Console(file=screen, force_terminal=True, width=100, highlight=False)
    train_api.train_runner(runner)
    text = screen.getvalue()
    assert "━" in text and "loss" in text and "eta" in text  # the live bar
    assert "epoch 1/2" in text and "epoch 2/2" in text and "trained 2 epochs" in text
