"""Per-sample teacher outputs computed once and read back (docs/teacher_cache.md).

Valid when the teachers are frozen and a sample is the same on every read (no random transform).
An entry lives in ``<cache dir>/<fingerprint>/``: one ``<name>.npy`` per cached output (N × ...,
memory-mapped, row = the sample's position in its split, i.e. the batch's ``index``) plus
``meta.json``; a single unnamed output is ``outputs.npy``. The fingerprint hashes the teachers'
weights, the dataset identity and whatever else the caller adds, so any change gives a new entry
instead of stale outputs.

A cache directory may be shared by runs that start at the same time (a team disk): an entry is built
by one process at a time (a lock file ``.<fingerprint>.lock`` beside it; the others wait, then read
it), in a temporary directory, with a progress bar, and renamed into place whole, so a reader never
sees a half-written entry. An entry in place is never written again. ``meta.json`` records each
file's SHA-256, checked whenever the entry is opened: an entry whose files changed afterwards is
refused with a :class:`~xmodal.errors.TeacherCacheError` naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xmodal.data.provenance import sha256_of
from xmodal.engine.rank_failure import on_rank_zero
from xmodal.errors import TeacherCacheError

CACHE_VERSION = 2  # 2: meta.json records the files' SHA-256, checked on every read
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def fingerprint(modules: Iterable[nn.Module], *extra: object) -> str:
    """SHA-256 of the modules' state (names, dtypes, shapes, values) and ``repr`` of ``extra``."""
    digest = hashlib.sha256(f"xmodal-teacher-cache-v{CACHE_VERSION}".encode())
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:32]


def check_cacheable(dataset) -> None:
    stochastic = getattr(dataset, "stochastic_transforms", None)
    if stochastic is None:
        raise ValueError(f"teacher cache: {type(dataset).__name__} cannot tell whether its samples are fixed "
                         f"(no stochastic_transforms / fingerprint()); turn the teacher cache off")
    if stochastic:
        raise ValueError(f"teacher cache: the training pipeline has random transforms {stochastic}, so teacher "
                         f"outputs differ on every read; remove them or turn the teacher cache off")


def load_or_build(cache_dir: str | Path, key: str, num_samples: int,
                  compute: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], logger=None) -> np.ndarray:
    """The cached array for ``key``, built with ``compute`` (yielding ``(positions, outputs)``) if absent.
    In distributed runs rank 0 builds it while the others wait."""

    def named():
        for positions, outputs in compute():
            yield positions, {"outputs": outputs}

    return load_or_build_outputs(cache_dir, key, num_samples, ["outputs"], named, logger)["outputs"]


def load_or_build_outputs(cache_dir: str | Path, key: str, num_samples: int, names: Sequence[str],
                          compute: Callable[[], Iterable[tuple[np.ndarray, dict[str, np.ndarray]]]],
                          logger=None) -> dict[str, np.ndarray]:
    """One memory-mapped array per name for ``key``, built with ``compute`` (yielding ``(positions,
    {name: outputs})``) if the entry is absent. In distributed runs rank 0 builds it while the others wait."""
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad or not names:
        raise ValueError(f"teacher cache: output names {bad or list(names)} are not usable as file names "
                         f"(letters, digits, '_', '.', '-')")
    entry = Path(cache_dir) / key
    # rank 0 checks or builds the entry while the others wait; its error stops every rank
    on_rank_zero(lambda: _open_or_build(entry, num_samples, list(names), compute, logger))
    if logger:
        logger.info(f"teacher cache: reading {entry}")
    return {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in names}


def _open_or_build(entry: Path, num_samples: int, names: list[str], compute, logger) -> None:
    """``meta.json`` is written last, so an entry with it is complete: check it; otherwise build it."""
    if not (entry / "meta.json").is_file():
        with _entry_lock(entry, logger):
            if not (entry / "meta.json").is_file():  # another run may have built it while this one waited
                _build(entry, num_samples, names, compute, logger)
                return
    verify_entry(entry, names)


def verify_entry(entry: Path, names: Sequence[str]) -> None:
    """Check the entry's files against the SHA-256 its ``meta.json`` records; a
    :class:`~xmodal.errors.TeacherCacheError` names the first file that does not match."""
    meta_path = entry / "meta.json"
    advice = f"delete {entry} and run again to rebuild it"
    try:
        meta = json.loads(meta_path.read_text())
        recorded = meta["sha256"]
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise TeacherCacheError(f"{meta_path}: not a readable teacher cache record with sha256 checksums "
                                f"({type(err).__name__}: {err}); {advice}") from None
    for name in names:
        path = entry / f"{name}.npy"
        if not path.is_file():
            raise TeacherCacheError(f"{path}: missing from the teacher cache entry (meta.json lists it); {advice}")
        actual = sha256_of(path)
        if actual != recorded.get(path.name):
            raise TeacherCacheError(f"{path}: sha256: content does not match meta.json (recorded "
                                    f"{str(recorded.get(path.name))[:12]}..., file {actual[:12]}...): the teacher "
                                    f"cache entry changed after it was written (a disk error, or another program "
                                    f"writing into it); {advice}")


@contextlib.contextmanager
def _entry_lock(entry: Path, logger) -> Iterator[None]:
    """An exclusive lock on ``.<entry>.lock`` beside the entry (flock: released by the kernel when its
    process dies). The file is removed on release, so the cache directory keeps only entries; a
    waiter that locked a file removed meanwhile tries again on the new one."""
    path = entry.with_name(f".{entry.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if logger and not told:
                    logger.info(f"teacher cache: another process is building {entry}; waiting for it")
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still locked: a process waiting on this file will see it gone and retry
        os.close(fd)


@contextlib.contextmanager
def _progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` samples; without one when another live display refuses it."""
    from rich.errors import LiveError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        progress.start()
    except LiveError:  # rich < 14 allows one live display at a time (e.g. the demo's)
        yield lambda n: None
        return
    task = progress.add_task(description, total=total)
    try:
        yield lambda n: progress.advance(task, n)
    finally:
        progress.stop()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _build(entry: Path, num_samples: int, names: list[str], compute, logger) -> None:
    """Build the entry in a temporary directory beside it and rename it into place; the caller holds the
    entry's lock, so any other temporary directory of this entry is left by a build that died."""
    for stale in [*entry.parent.glob(f"{entry.name}.tmp-*"), *entry.parent.glob(f"{entry.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = entry.with_name(f"{entry.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir(parents=True)
    if logger:
        logger.info(f"teacher cache: computing {', '.join(names)} for {num_samples} samples into {entry}")
    start = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    filled = np.zeros(num_samples, dtype=bool)
    try:
        with _progress(num_samples, "teacher cache") as advance:
            for positions, outputs in compute():
                missing = sorted(set(names) - set(outputs))
                if missing:
                    raise KeyError(f"teacher cache: the computed outputs lack {missing}; they have {sorted(outputs)}")
                for name in names:
                    if name not in arrays:
                        arrays[name] = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+",
                                                                 dtype=outputs[name].dtype,
                                                                 shape=(num_samples, *outputs[name].shape[1:]))
                    arrays[name][positions] = outputs[name]
                filled[positions] = True
                advance(len(positions))
        if not arrays or not filled.all():
            raise RuntimeError(f"teacher cache: {int((~filled).sum())} of {num_samples} samples got no output")
        for array in arrays.values():
            array.flush()
        meta = {"key": entry.name, "num_samples": num_samples, "version": CACHE_VERSION,
                "outputs": {name: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for name, a in arrays.items()}}
        arrays.clear()
        meta["sha256"] = {}
        for name in names:
            _fsync(tmp / f"{name}.npy")  # on disk before the entry is renamed into place
            meta["sha256"][f"{name}.npy"] = sha256_of(tmp / f"{name}.npy")
        (tmp / "meta.json").write_text(json.dumps(meta))
        _fsync(tmp / "meta.json")
        _fsync(tmp)
    except BaseException:
        arrays.clear()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if entry.exists():  # an unfinished entry (no meta.json, left by an older version): swap it out whole
        old = entry.with_name(f"{entry.name}.old-{secrets.token_hex(4)}")
        os.replace(entry, old)
        os.replace(tmp, entry)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, entry)
    _fsync(entry.parent)
    if logger:
        logger.info(f"teacher cache: built {entry} in {time.perf_counter() - start:.1f} s")
