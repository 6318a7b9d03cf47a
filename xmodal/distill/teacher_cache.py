"""Per-sample teacher outputs computed once and read back (docs/teacher_cache.md).

Valid when the teachers are frozen and a sample is the same on every read (no random transform).
An entry lives in ``<cache dir>/<fingerprint>/``: one ``<name>.npy`` per cached output (N × ...,
memory-mapped, row = the sample's position in its split, i.e. the batch's ``index``) plus
``meta.json``; a single unnamed output is ``outputs.npy``. The fingerprint hashes the teachers'
weights, the dataset identity and whatever else the caller adds, so any change gives a new entry
instead of stale outputs. Entries are built in a temporary directory, with a progress bar, and renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import barrier, get_rank
from torch import nn

CACHE_VERSION = 1
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
    if get_rank() == 0 and not is_complete(entry, names):
        _build(entry, num_samples, list(names), compute, logger)
    barrier()
    if logger:
        logger.info(f"teacher cache: reading {entry}")
    return {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in names}


def is_complete(entry: Path, names: Sequence[str]) -> bool:
    """``meta.json`` is written last, so its presence with every output file marks a finished entry."""
    return (entry / "meta.json").is_file() and all((entry / f"{name}.npy").is_file() for name in names)


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


def _build(entry: Path, num_samples: int, names: list[str], compute, logger) -> None:
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
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
    except BaseException:
        arrays.clear()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for array in arrays.values():
        array.flush()
    meta = {"key": entry.name, "num_samples": num_samples, "version": CACHE_VERSION,
            "outputs": {name: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for name, a in arrays.items()}}
    arrays.clear()
    (tmp / "meta.json").write_text(json.dumps(meta))
    if entry.exists():  # an unfinished entry left by an older version: replace it whole
        shutil.rmtree(entry)
    os.replace(tmp, entry)
    if logger:
        logger.info(f"teacher cache: built {entry} in {time.perf_counter() - start:.1f} s")
