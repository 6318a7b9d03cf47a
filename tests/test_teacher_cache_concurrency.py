"""A teacher cache directory shared by runs that start at the same time (a team disk).

Two processes asking for the same entry at once build it once (the second waits on the entry's lock,
then reads the finished entry), a reader never sees a half-written entry, an entry whose files changed
after it was written is refused with an error naming the file, and what a killed build leaves behind
(an unfinished entry, a temporary directory) is rebuilt.
"""

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from xmodal.data.provenance import sha256_of
from xmodal.distill.teacher_cache import load_or_build
from xmodal.errors import TeacherCacheError

N = 40
EXPECTED = np.stack([np.arange(N), -np.arange(N)], 1).astype(np.float32)


def _compute(log: Path, started: Path | None = None, pause: float = 0.0):
    """Yields the outputs in chunks of 8, noting each call in ``log``; with ``started`` and ``pause`` it
    announces the build and works slowly, so another process can arrive in the middle of it."""

    def compute():
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        if started is not None:
            started.write_text("")
        for start in range(0, N, 8):
            time.sleep(pause)
            yield np.arange(start, start + 8), EXPECTED[start:start + 8]

    return compute


def _read(cache: Path, log: Path, out: Path, started: Path | None = None, pause: float = 0.0) -> None:
    """A process of its own: the cached array, or the error it met, written to ``out``."""
    try:
        array = np.asarray(load_or_build(cache, "key", N, _compute(log, started, pause)))
        out.write_text("ok" if np.array_equal(array, EXPECTED) else f"wrong values: {array.tolist()}")
    except BaseException as error:  # noqa: BLE001  (reported to the test through the file)
        out.write_text(f"{type(error).__name__}: {error}")


def _start(*args) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=_read, args=args)
    process.start()
    return process


def test_two_processes_build_an_entry_once_and_both_read_it_whole(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "computed.log"
    started = tmp_path / "started"
    first = _start(cache, log, tmp_path / "first.out", started, 0.1)  # about half a second of building
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    # the first build is under way, its rows half written in a temporary directory: the second run asks now
    second = _start(cache, log, tmp_path / "second.out")
    for process in (first, second):
        process.join(60)
        assert process.exitcode == 0
    assert (tmp_path / "first.out").read_text() == "ok"
    assert (tmp_path / "second.out").read_text() == "ok"  # it waited for the finished entry
    assert len(log.read_text().split()) == 1  # built once
    # only the entry remains: no lock file, no temporary directory; its checksum is recorded
    assert [p.name for p in cache.iterdir()] == ["key"]
    meta = json.loads((cache / "key" / "meta.json").read_text())
    assert meta["sha256"] == {"outputs.npy": sha256_of(cache / "key" / "outputs.npy")}


def test_an_entry_changed_after_it_was_written_is_refused_naming_the_file(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "computed.log"
    load_or_build(cache, "key", N, _compute(log))
    path = cache / "key" / "outputs.npy"
    with open(path, "r+b") as fh:  # another program writes into the finished entry
        fh.seek(-4, os.SEEK_END)
        fh.write(b"\xff\xff\xff\xff")
    with pytest.raises(TeacherCacheError) as info:
        load_or_build(cache, "key", N, _compute(log))
    message = str(info.value)
    assert message.startswith(f"{path}: sha256: content does not match meta.json (recorded ")
    assert f"delete {cache / 'key'} and run again to rebuild it" in message
    assert len(log.read_text().split()) == 1  # refused, not rebuilt behind the other program's back

    (cache / "key" / "outputs.npy").unlink()
    with pytest.raises(TeacherCacheError, match=r"outputs\.npy: missing from the teacher cache entry"):
        load_or_build(cache, "key", N, _compute(log))


def test_what_a_killed_build_leaves_is_rebuilt(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "computed.log"
    (cache / "key").mkdir(parents=True)  # an unfinished entry without meta.json (an older version's)
    np.save(cache / "key" / "outputs.npy", np.zeros((3, 2), np.float32))
    (cache / "key.tmp-otherhost-123-abcd").mkdir()  # a temporary directory whose build was killed
    (cache / "key.tmp-otherhost-123-abcd" / "outputs.npy").write_bytes(b"half")
    array = load_or_build(cache, "key", N, _compute(log))
    assert np.array_equal(array, EXPECTED)
    assert [p.name for p in cache.iterdir()] == ["key"]


def test_a_failed_build_leaves_nothing_and_the_next_run_builds(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "computed.log"

    def failing():
        yield np.arange(8), EXPECTED[:8]
        raise RuntimeError("teacher crashed")

    with pytest.raises(RuntimeError, match="teacher crashed"):
        load_or_build(cache, "key", N, failing)
    assert list(cache.iterdir()) == []
    assert np.array_equal(load_or_build(cache, "key", N, _compute(log)), EXPECTED)
