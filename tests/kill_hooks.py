"""Test-only crash injection for tests/test_resume_kill.py, imported by its configs (``custom_imports``).

``XMODAL_TEST_KILL_AT`` picks where the training process kills itself with SIGKILL (no cleanup runs);
an optional ``@DIR`` suffix limits it to the run whose work dir is named DIR (a stage: ``@stage3``):

* ``iter:K``     after the K-th training iteration of the run;
* ``val:E``      during the validation that follows training epoch E, before its first batch;
* ``write:NAME`` inside the atomic write of the file NAME (e.g. ``epoch_2.pth``), once half of its
  bytes are in the temp file: the real ``atomic_write_bytes`` runs, its ``os.write`` dies mid-write.

``XMODAL_TEST_WRITE_LOG``, if set, receives one line per ``atomic_write_bytes`` call: the file name.
Also registers ``RandomJitter``, a transform drawing from numpy's and Python's global RNGs, so a
resumed run only matches if those RNG states were restored.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook

import xmodal.engine.checkpoint as checkpoint_module
from xmodal.registry import HOOKS, TRANSFORMS

_SPEC = os.environ.get("XMODAL_TEST_KILL_AT", "")
_KIND, _, _REST = _SPEC.partition(":")
_VALUE, _, _ONLY_IN = _REST.partition("@")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _armed(work_dir) -> bool:
    return not _ONLY_IN or Path(work_dir).name == _ONLY_IN


@HOOKS.register_module(force=True)
class KillSwitchHook(Hook):
    priority = "LOWEST"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if _KIND == "iter" and runner.iter + 1 == int(_VALUE) and _armed(runner.work_dir):
            _die()

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        if _KIND == "val" and runner.epoch == int(_VALUE) and _armed(runner.work_dir):
            _die()


def _dying_write(real_write):
    """Stands in for ``os.write`` on the temp file: writes half of the data, syncs it, then kills the process."""

    def write(fd: int, data) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        os.fsync(fd)
        _die()
        return 0  # not reached

    return write


_real_atomic_write = checkpoint_module.atomic_write_bytes


def _recording_atomic_write(data: bytes, path) -> None:
    path = Path(path)
    log = os.environ.get("XMODAL_TEST_WRITE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{path.parent.name}/{path.name}\n")
    if _KIND == "write" and path.name == _VALUE and _armed(path.parent):
        os.write = _dying_write(os.write)
    _real_atomic_write(data, path)


def _install() -> None:
    # every module that imported the function by name (the checkpoint hook, the stage runner) gets the wrapper
    for module in list(sys.modules.values()):
        if module is not None and module.__name__.startswith("xmodal.") \
                and getattr(module, "atomic_write_bytes", None) is _real_atomic_write:
            module.atomic_write_bytes = _recording_atomic_write


_install()


@TRANSFORMS.register_module(force=True)
class RandomJitter:
    """Adds noise drawn from numpy's and Python's global RNGs (and torch's) to one modality."""

    stochastic = True

    def __init__(self, key: str, std: float = 0.05) -> None:
        self.key, self.std = key, float(std)

    def __call__(self, sample: dict) -> dict:
        x = torch.as_tensor(sample[self.key])
        shift = float(np.random.normal()) + random.gauss(0.0, 1.0)
        sample[self.key] = x + self.std * (shift + torch.randn_like(x))
        return sample
