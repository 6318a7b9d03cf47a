"""tools/test.py writes to <work dir>/test_<timestamp>/, leaves the training run's files alone, and its
scalars (like validation's) are prefixed test/ (val/)."""

from __future__ import annotations

import json

from tests.test_bad_inputs import _task
from xmodal.apis import test as test_api
from xmodal.apis import train as train_api


def test_test_outputs_go_to_a_test_dir_and_scalars_are_prefixed(tmp_path, capsys):
    ws = _task(tmp_path / "ws")
    work = tmp_path / "work"
    train_api.main([str(ws / "student.py"), "--work-dir", str(work), "--cfg-options", "experiment_name=prefix"])
    (train_log,) = work.glob("2*/vis_data/scalars.json")
    records = [json.loads(line) for line in train_log.read_text().splitlines()]
    assert any("val/accuracy" in r for r in records) and not any("accuracy" in r for r in records)
    dump = (work / "student.py").read_bytes()
    test_api.main([str(ws / "student.py"), str(work / "epoch_1.pth"), "--work-dir", str(work)])
    (test_dir,) = work.glob("test_*")
    assert (test_dir / f"{test_dir.name}.log").is_file() and (test_dir / "student.py").is_file()
    assert json.loads((test_dir / f"{test_dir.name}.json").read_text())["test/accuracy"] >= 0
    (test_scalars,) = test_dir.glob("vis_data/scalars.json")
    assert "test/accuracy" in json.loads(test_scalars.read_text().splitlines()[0])
    assert (work / "student.py").read_bytes() == dump  # the training run's config dump is left alone
    assert len(list(work.glob("2*"))) == 1  # no new timestamped directory beside the training run's
