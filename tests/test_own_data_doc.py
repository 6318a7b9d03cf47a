"""docs/own_data.md, run as written: its files are written and its commands run, in order, in a fresh
directory (the commands' ``tools/`` are the repository's)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def doc_steps(doc: Path) -> list[tuple[str, str]]:
    """("file", path + text) and ("run", command) in the order the page gives them."""
    steps = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", doc.read_text(), flags=re.S):
        if lang == "python" and body.startswith("# file: "):
            path, _, _ = body.partition("\n")
            steps.append(("file", path[len("# file: "):].strip() + "\n" + body))
        elif lang == "bash":
            steps += [("run", line.strip()) for line in body.splitlines() if line.strip()]
    return steps


def run_doc(doc: Path, cwd: Path) -> list[subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    results = []
    for kind, step in doc_steps(doc):
        if kind == "file":
            path, _, text = step.partition("\n")
            (cwd / path).parent.mkdir(parents=True, exist_ok=True)
            (cwd / path).write_text(text)
            continue
        argv = shlex.split(step)
        assert argv[0] == "python", step
        argv = [sys.executable, *(str(REPO / a) if a.startswith("tools/") else a for a in argv[1:])]
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{step}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        results.append(result)
    return results


def test_the_own_data_walkthrough_runs_end_to_end(tmp_path):
    steps = doc_steps(REPO / "docs" / "own_data.md")
    commands = [s for k, s in steps if k == "run"]
    assert commands[:2] == ["python make_data.py", "python tools/train.py my_configs/teacher.py"]
    results = run_doc(REPO / "docs" / "own_data.md", tmp_path)
    kd_header = results[2].stdout
    assert re.search(r"teacher   teacher: val accuracy [01]\.\d+", kd_header), kd_header
    metrics = json.loads((tmp_path / "work_dirs" / "kd_test.json").read_text())["metrics"]
    assert metrics["accuracy"] > 0.4  # 3 classes: the student learnt something
    assert (tmp_path / "work_dirs" / "student.pth").is_file() and (tmp_path / "work_dirs" / "student.onnx").is_file()
    assert "parity" in results[-1].stdout
