"""docs/api.md's example, run as written on the files of docs/own_data.md, and the API's checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_own_data_doc import doc_steps

pytestmark = pytest.mark.slow


def test_the_api_example_runs(tmp_path):
    for kind, step in doc_steps(REPO / "docs" / "own_data.md"):
        if kind == "file":
            path, _, text = step.partition("\n")
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text)
    (example,) = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), flags=re.S)[-1:]
    (tmp_path / "example.py").write_text(example)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for script in ("make_data.py", "example.py"):
        result = subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"work_dirs/teacher \{'accuracy': ", result.stdout), result.stdout[-2000:]
    assert re.search(r"test accuracy 0\.\d{3}", result.stdout)
    assert (tmp_path / "work_dirs" / "student_api.pth").is_file()
    assert not (tmp_path / "work_dirs" / "kd" / ".xmodal.lock").exists()
