"""Test-only faults on one rank of a distributed run, for tests/test_rank_failure.py (imported by its
config through ``custom_imports``). Each fault notes the time it fired in ``$XMODAL_TEST_FAULT_LOG``:

* ``BadSample`` (a transform): ``$XMODAL_TEST_BAD_SAMPLE`` is a training position whose sample cannot be
  read; it raises wherever that sample is loaded (a rank's training batch, rank 0's teacher-cache build);
* ``NaNInputHook``: ``$XMODAL_TEST_NAN_AT=R:I,J`` fills rank R's input batch with NaN before its
  iterations I and J (1-based), so only that rank's loss is non-finite;
* ``StepLogHook``: each rank appends ``<iteration> stepped|skipped`` to ``$XMODAL_TEST_STEP_LOG.<rank>``.
"""

from __future__ import annotations

import os
import time

from mmengine.dist import get_rank
from mmengine.hooks import Hook

from xmodal.registry import HOOKS, TRANSFORMS


def _note_fault(what: str) -> None:
    with open(os.environ["XMODAL_TEST_FAULT_LOG"], "a") as fh:
        fh.write(f"{get_rank()} {time.time()} {what}\n")


@TRANSFORMS.register_module(force=True)
class BadSample:
    stochastic = False  # the same sample on every read (cacheable): it fails every time

    def __call__(self, sample: dict) -> dict:
        bad = os.environ.get("XMODAL_TEST_BAD_SAMPLE")
        if bad is not None and int(sample["index"]) == int(bad):
            _note_fault(f"bad sample {bad}")
            raise ValueError(f"train sample {bad}: unreadable image (a damaged file)")
        return sample


@HOOKS.register_module(force=True)
class NaNInputHook(Hook):
    priority = "VERY_HIGH"

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        rank, _, iterations = os.environ.get("XMODAL_TEST_NAN_AT", "").partition(":")
        if rank and get_rank() == int(rank) and runner.iter + 1 in {int(i) for i in iterations.split(",")}:
            _note_fault(f"nan at iteration {runner.iter + 1}")
            data_batch["image"].fill_(float("nan"))


@HOOKS.register_module(force=True)
class StepLogHook(Hook):
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        with open(f"{os.environ['XMODAL_TEST_STEP_LOG']}.{get_rank()}", "a") as fh:
            fh.write(f"{runner.iter + 1} {'stepped' if outputs else 'skipped'}\n")
