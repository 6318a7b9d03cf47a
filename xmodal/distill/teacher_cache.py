"""Per-sample teacher outputs computed once and read back (DESIGN §4, teacher cache).

Valid when the teachers are frozen and a sample is the same on every read (no random transform).
An entry lives in ``<cache dir>/<fingerprint>/`` as ``outputs.npy`` (N × ..., memory-mapped, row =
the sample's position in its split, i.e. the batch's ``index``) plus ``meta.json``. The fingerprint
hashes the teachers' weights, the dataset identity and whatever else the caller adds, so any change
gives a new entry instead of stale outputs. Entries are built in a temporary directory and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import barrier, get_rank
from torch import nn

CACHE_VERSION = 1


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
    entry = Path(cache_dir) / key
    if get_rank() == 0 and not (entry / "outputs.npy").is_file():
        _build(entry, num_samples, compute, logger)
    barrier()
    if logger:
        logger.info(f"teacher cache: reading {entry}")
    return np.load(entry / "outputs.npy", mmap_mode="r")


def _build(entry: Path, num_samples: int, compute, logger) -> None:
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if logger:
        logger.info(f"teacher cache: computing teacher outputs for {num_samples} samples into {entry}")
    array, filled = None, np.zeros(num_samples, dtype=bool)
    for positions, outputs in compute():
        if array is None:
            array = np.lib.format.open_memmap(tmp / "outputs.npy", mode="w+", dtype=np.float32,
                                              shape=(num_samples, *outputs.shape[1:]))
        array[positions] = outputs
        filled[positions] = True
    if array is None or not filled.all():
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"teacher cache: {int((~filled).sum())} of {num_samples} samples got no output")
    array.flush()
    del array
    (tmp / "meta.json").write_text(json.dumps({"key": entry.name, "num_samples": num_samples,
                                               "version": CACHE_VERSION}))
    os.replace(tmp, entry)
