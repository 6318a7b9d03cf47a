"""One work dir, one run: the lock names a live holder's PID, a dead holder's lock is taken over, and the
lock is gone when the run ends (finished or failed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.test_bad_inputs import _task
from xmodal.apis import train as train_api
from xmodal.engine.lock import LOCK_NAME, acquire, release, work_dir_lock
from xmodal.errors import WorkDirBusyError


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "x"}))
    with pytest.raises(WorkDirBusyError, match=rf"another run \(PID {os.getpid()}, started x\)"):
        acquire(tmp_path)
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    assert acquire(tmp_path) == lock and json.loads(lock.read_text())["pid"] == os.getpid()
    release(lock)
    assert not lock.exists()
    lock.write_text("{")  # a write cut short: no live holder
    with work_dir_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_train_takes_over_a_stale_lock_and_releases_it(tmp_path, capsys):
    ws = _task(tmp_path / "ws")
    work = tmp_path / "work"
    work.mkdir()
    (work / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    train_api.main([str(ws / "student.py"), "--work-dir", str(work), "--cfg-options", "experiment_name=stale"])
    assert (work / "epoch_1.pth").is_file() and not (work / LOCK_NAME).exists()


def test_a_second_process_into_a_held_work_dir_fails_naming_the_first(tmp_path):
    ws = _task(tmp_path / "ws")
    work = tmp_path / "work"
    with work_dir_lock(work):  # this process is the live run
        result = subprocess.run([sys.executable, "tools/train.py", str(ws / "student.py"), "--work-dir", str(work)],
                                cwd=os.path.dirname(os.path.dirname(__file__)), capture_output=True, text=True,
                                env=dict(os.environ), timeout=300)
    assert result.returncode == 2
    assert f"another run (PID {os.getpid()}" in result.stderr.strip().splitlines()[-1]
