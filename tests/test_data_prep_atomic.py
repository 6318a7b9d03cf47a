"""data_prep scripts write atomically and idempotently: an interrupted run leaves no half dataset, a
rerun refuses without --force and touches nothing, a failed --force rebuild keeps the old dataset,
stale temporary directories of killed runs are cleaned up, and meta.json records where the data came from.

Two scripts with different writers: vggsound (arrays, DatasetStream) and flickr30k (image files,
write_retrieval_dataset)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data_prep import flickr30k, vggsound
from tests.conftest import REPO
from tests.test_prep_vggsound import make_vggs50k
from tests.test_retrieval_data import _entry, _png
from xmodal.data import retrieval, writer
from xmodal.version import __version__


def _flickr_source(root: Path) -> tuple[Path, Path]:
    src = root / "flickr30k-images"
    entries = []
    for i, split in enumerate(["train", "test", "train", "val", "test"]):
        _png(src / f"{1000 + i}.png", (40 * i, 255 - 40 * i, 7))
        entries.append(_entry(i, f"{1000 + i}.png", split, 2))
    js = root / "caption_datasets" / "dataset_flickr30k.json"
    js.parent.mkdir(parents=True)
    js.write_text(json.dumps({"dataset": "flickr30k", "images": entries}))
    return src, js


class Injected(Exception):
    """A failure no script catches (not an OSError a CLI wrapper might report as a user error)."""


class Script:
    """One prep script: its argv, the index file meta.json must hash, and a hook to break it mid-way."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.out = name, tmp / "data" / name
        if name == "vggsound":
            root = make_vggs50k(tmp / "VGGS50K")
            self.main, self.index = vggsound.main, root / vggsound.METADATA_FILE
            self.argv = ["--src", str(root), "--out", str(self.out)]
            self.module, self.step = vggsound, "load_feature"  # called per sample and modality
        else:
            src, js = _flickr_source(tmp)
            self.main, self.index = flickr30k.main, js
            self.argv = ["--src", str(src), "--karpathy", str(js), "--out", str(self.out)]
            self.module, self.step = retrieval, "place"  # called per image file

    def run(self, *extra: str) -> int:
        try:
            return self.main([*self.argv, *extra])
        except SystemExit as stop:  # a main wrapped by cli_errors exits instead of returning
            return stop.code

    def break_at(self, monkeypatch, call: int) -> None:
        real, calls = getattr(self.module, self.step), []

        def failing(*args, **kwargs):
            calls.append(1)
            if len(calls) == call:
                raise Injected("disk full")
            return real(*args, **kwargs)

        monkeypatch.setattr(self.module, self.step, failing)


@pytest.fixture(params=["vggsound", "flickr30k"])
def script(request, tmp_path):
    return Script(request.param, tmp_path)


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def test_interrupted_run_leaves_no_output_and_no_temp_dir(script, monkeypatch, capsys):
    script.break_at(monkeypatch, 3)
    with pytest.raises(Injected):
        script.run()
    assert not script.out.exists()
    assert _leftovers(script.out) == []


def test_rerun_without_force_refuses_and_touches_nothing(script, capsys):
    assert script.run() == 0
    before = _snapshot(script.out)
    capsys.readouterr()
    assert script.run() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--force" in err[0] and str(script.out) in err[0]
    assert _snapshot(script.out) == before
    assert _leftovers(script.out) == []


def test_failed_forced_rebuild_keeps_the_old_dataset(script, monkeypatch):
    assert script.run() == 0
    before = _snapshot(script.out)
    script.break_at(monkeypatch, 2)
    with pytest.raises(Injected):
        script.run("--force")
    assert _snapshot(script.out) == before
    assert _leftovers(script.out) == []


def test_failed_final_rename_puts_the_old_dataset_back(script, monkeypatch):
    assert script.run() == 0
    before = _snapshot(script.out)
    real = os.replace

    def replace(src, dst):
        if Path(dst) == script.out and writer._ASIDE not in Path(src).name:  # the new dataset moving in
            raise Injected("rename failed")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Injected):
        script.run("--force")
    monkeypatch.undo()
    assert _snapshot(script.out) == before
    assert _leftovers(script.out) == []


def test_force_replaces_with_the_new_data_and_meta_records_the_sources(script):
    assert script.run() == 0
    first = json.loads((script.out / "meta.json").read_text())
    index_bytes = script.index.read_bytes()
    assert first["xmodal_version"] == __version__
    assert first["source_files"] == {script.index.name: {"size": len(index_bytes),
                                                         "sha256": hashlib.sha256(index_bytes).hexdigest()}}

    if script.name == "vggsound":  # a different label for the first clip
        lines = script.index.read_text().splitlines()
        lines[0] = lines[0].rsplit("&", 1)[0] + "&7"
        script.index.write_text("\n".join(lines) + "\n")
    else:  # a different first caption
        data = json.loads(script.index.read_text())
        data["images"][0]["sentences"][0]["raw"] = "a changed caption"
        script.index.write_text(json.dumps(data))
    assert script.run("--force") == 0
    second = json.loads((script.out / "meta.json").read_text())
    new_bytes = script.index.read_bytes()
    assert second["source_files"][script.index.name]["sha256"] == hashlib.sha256(new_bytes).hexdigest() \
        != first["source_files"][script.index.name]["sha256"]
    if script.name == "vggsound":
        import numpy as np

        assert int(np.load(script.out / "labels.npy")[0]) == 7
    else:
        assert json.loads((script.out / "text.jsonl").read_text().splitlines()[0])["caption"] == "a changed caption"
    assert _leftovers(script.out) == []


def test_split_file_is_recorded_too(tmp_path):
    script = Script("vggsound", tmp_path)
    split = tmp_path / "my_split.json"
    split.write_text(json.dumps({"train": [0, 1, 2], "val": [3], "test": [4]}))
    assert script.run("--split-file", str(split)) == 0
    sources = json.loads((script.out / "meta.json").read_text())["source_files"]
    assert sources["my_split.json"] == {"size": split.stat().st_size,
                                        "sha256": hashlib.sha256(split.read_bytes()).hexdigest()}
    assert set(sources) == {"my_split.json", vggsound.METADATA_FILE}


def test_dataset_gets_the_usual_permissions(script):
    old = os.umask(0o027)
    try:
        assert script.run() == 0
    finally:
        os.umask(old)
    assert script.out.stat().st_mode & 0o777 == 0o750  # not mkdtemp's private 0700


# -- killed runs: the process cannot clean up after itself ------------------------------------------------
_KILLER = """
import os, signal, sys
from pathlib import Path
{patch}
from data_prep import vggsound
vggsound.main({argv!r})
"""
_KILL_MID_WAY = """
from data_prep import vggsound as _v
_real, _calls = _v.load_feature, []
def _dying(*args, **kwargs):
    _calls.append(1)
    if len(_calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(*args, **kwargs)
_v.load_feature = _dying
"""
_KILL_IN_SWAP = """
_real = os.replace
def _dying(src, dst):
    if Path(dst) == Path({out!r}) and "replaced-old" not in Path(src).name:  # old moved aside, new not yet in
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(src, dst)
os.replace = _dying
"""


def _killed_run(argv: list[str], patch: str) -> None:
    code = _KILLER.format(patch=textwrap.dedent(patch), argv=argv)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def test_temp_dir_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    script = Script("vggsound", tmp_path)
    _killed_run(script.argv, _KILL_MID_WAY)
    assert not script.out.exists()
    stale = _leftovers(script.out)
    assert len(stale) == 1 and stale[0].startswith(f".{script.out.name}-")  # what SIGKILL leaves behind
    assert script.run() == 0
    assert _leftovers(script.out) == []
    assert json.loads((script.out / "meta.json").read_text())["name"] == "vggsound"


def test_kill_during_the_swap_restores_the_old_dataset(tmp_path, capsys):
    script = Script("vggsound", tmp_path)
    assert script.run() == 0
    before = _snapshot(script.out)
    _killed_run([*script.argv, "--force"], _KILL_IN_SWAP.format(out=str(script.out)))
    assert not script.out.exists()  # killed between the two renames
    assert any(writer._ASIDE in name for name in _leftovers(script.out))
    capsys.readouterr()
    assert script.run() == 2  # the old dataset is back, so a rerun without --force refuses
    assert "--force" in capsys.readouterr().err
    assert _snapshot(script.out) == before
    assert _leftovers(script.out) == []


def test_only_dead_processes_temp_dirs_on_this_host_are_removed(tmp_path):
    out = tmp_path / "ds"
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    dead, alive = done.pid, os.getppid()
    names = [f".ds-{writer._HOST_TAG}-{dead}-abc12345",  # a killed run here: removed
             f".ds-{writer._HOST_TAG}-{alive}-abc12345",  # a run still going: kept
             f".ds-00000000-{dead}-abc12345",  # another machine on a shared disk: kept
             f".dsx-{writer._HOST_TAG}-{dead}-abc12345"]  # another dataset's: kept
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "labels.npy").write_bytes(b"partial")
    writer.clean_stale(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
