"""Runner hooks: RNG state in checkpoints, student-only export, a compact progress display
(``xmodal.apis.runner.add_default_hooks`` decides which of them every run gets)."""

from __future__ import annotations

import json
import numbers
import random
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio import dump
from mmengine.hooks import Hook
from mmengine.hooks import LoggerHook as MMEngineLoggerHook

import xmodal.engine.checkpoint_hook  # noqa: F401  (registers xmodal's CheckpointHook)
from xmodal.engine.checkpoint import atomic_write_bytes, load_checkpoint_file, save_checkpoint_file
from xmodal.engine.unwrap import unwrap
from xmodal.errors import CheckpointError
from xmodal.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Stores the torch / numpy / python RNG states in each checkpoint and restores them on resume,
    so a resumed run draws the same random numbers (dropout, augmentation) as an uninterrupted one.

    A data loader with workers draws a base seed for them from torch's RNG whenever it starts them: every
    epoch, or only once per run with ``persistent_workers=True``, so once in the uninterrupted run and
    once more in the resumed one. Before training, each such loader gets a generator of its own for that
    draw, which leaves the training RNG alone (the workers' random numbers come from
    ``WorkerSeededBatchSampler``, not from that seed)."""

    priority = "VERY_LOW"

    def before_train(self, runner) -> None:
        for loop in (runner.train_loop, runner.val_loop):
            loader = getattr(loop, "dataloader", None)
            if loader is not None and getattr(loader, "num_workers", 0) and loader.generator is None:
                loader.generator = torch.Generator()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its own RNG
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        cuda = state.get("cuda")
        if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


@HOOKS.register_module()
class LabelBudgetHook(Hook):
    """Before training: writes ``labelled_ids.json`` (the ids that kept their labels, and the subset)
    to the work dir when the training set has a label budget or a subset, so a run is auditable and
    reproducible (the file is a valid ``labelled=dict(ids_file=...)``); and refuses to train a model
    with no teacher on a training set without a single labelled sample (its loss would be 0)."""

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        flags = getattr(dataset, "labelled_flags", None)
        if flags is None:
            return
        if not np.asarray(flags).any() and not hasattr(unwrap(runner.model), "teachers"):
            raise ValueError("train_dataloader.dataset: no training sample is labelled and the model has no "
                             "teacher, so there is nothing to learn from; give it labels (labelled=dict(fraction="
                             "...)) or train it as a distiller's student")
        if runner.rank == 0 and (getattr(dataset, "budget", None) or getattr(dataset, "subset", None)):
            record = json.dumps(dataset.labelled_record(), indent=1).encode()
            atomic_write_bytes(record, Path(runner.work_dir) / "labelled_ids.json")


@HOOKS.register_module()
class StudentExportHook(Hook):
    """After training a Distiller, write student-only checkpoints (no teacher weights) next to the
    full ones: ``student_last.pth`` and, if a best checkpoint was kept, ``student_best.pth``.
    They load into the plain student config (``tools/test.py STUDENT_CONFIG student_best.pth``)."""

    priority = "LOWEST"

    def after_train(self, runner) -> None:
        model = unwrap(runner.model)
        if not hasattr(model, "student_state_dict") or runner.rank != 0:
            return
        work_dir = Path(runner.work_dir)
        meta = {"epoch": runner.epoch, "iter": runner.iter, "source": "last"}
        save_checkpoint_file({"state_dict": model.student_state_dict(), "meta": meta}, work_dir / "student_last.pth")
        best = runner.message_hub.get_info("best_ckpt")
        if best and Path(best).is_file():
            state = load_checkpoint_file(best)["state_dict"]
            student = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
            save_checkpoint_file({"state_dict": student, "meta": {"source": str(Path(best).name)}},
                                 work_dir / "student_best.pth")
            runner.logger.info(f"student-only checkpoint written: {work_dir / 'student_best.pth'}")


@HOOKS.register_module()
class EpochHistoryHook(Hook):
    """Keeps the mean training loss and the validation metrics of every epoch in memory
    (``self.history``), for plots and summaries written by tools."""

    def __init__(self) -> None:
        self.history: list[dict] = []
        self._losses: list[float] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if outputs and "loss" in outputs:
            self._losses.append(float(outputs["loss"].detach()))

    def after_val_epoch(self, runner, metrics=None) -> None:
        loss = float(np.mean(self._losses)) if self._losses else float("nan")
        self.history.append({"epoch": runner.epoch, "train_loss": loss, **(metrics or {})})
        self._losses = []


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Advances a ``rich.progress`` task by one step per training iteration and shows the latest
    validation accuracy; the Progress object is owned by the caller (e.g. ``tools/demo.py``)."""

    priority = "LOW"

    def __init__(self, progress=None, task_id=None) -> None:
        self.progress, self.task_id = progress, task_id

    def before_train(self, runner) -> None:
        if self.progress is not None:
            total = runner.max_epochs * len(runner.train_dataloader)
            self.progress.update(self.task_id, total=total, completed=runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.progress is not None and metrics and "accuracy" in metrics:
            self.progress.update(self.task_id, status=f"val acc {metrics['accuracy']:.3f}")


def _prefixed(tag: dict, prefix: str) -> dict:
    return {f"{prefix}/{key}": value for key, value in tag.items()}


@HOOKS.register_module(name="LoggerHook")
class PrefixedLoggerHook(MMEngineLoggerHook):
    """mmengine's ``LoggerHook`` (same arguments) whose validation and test scalars are written as
    ``val/<name>`` and ``test/<name>`` (scalars.json, TensorBoard), apart from the training ones; the
    log lines are unchanged."""

    def after_val_epoch(self, runner, metrics=None) -> None:
        tag, log_str = runner.log_processor.get_log_after_epoch(runner, len(runner.val_dataloader), "val")
        runner.logger.info(log_str)
        training = not (isinstance(runner._train_loop, dict) or runner._train_loop is None)
        step = (runner.epoch if self.log_metric_by_epoch else runner.iter) if training else 0
        runner.visualizer.add_scalars(_prefixed(tag, "val"), step=step, file_path=self.json_log_path)

    def after_test_epoch(self, runner, metrics=None) -> None:
        tag, log_str = runner.log_processor.get_log_after_epoch(runner, len(runner.test_dataloader), "test",
                                                                with_non_scalar=True)
        runner.logger.info(log_str)
        tag = _prefixed(tag, "test")
        dump(self._process_tags(tag), str(Path(runner.log_dir) / self.json_log_path))
        scalars = {k: v for k, v in tag.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        runner.visualizer.add_scalars(scalars, step=0, file_path=self.json_log_path)


@HOOKS.register_module()
class ResumeScheduleCheck(Hook):
    """A resumed run continues its checkpoint's learning-rate schedule (mmengine restores the schedulers'
    state, their length included), so a resume with another number of epochs would train on the old
    schedule without a word. Such a resume is refused, saying what to do instead."""

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get("param_schedulers")
        current = runner.param_schedulers
        if not runner.cfg.get("resume") or not isinstance(saved, list) or not isinstance(current, list):
            return
        for i, (state, scheduler) in enumerate(zip(saved, current)):
            if not hasattr(scheduler, "end") or not isinstance(state, dict):
                continue
            if state.get("end") != scheduler.end or state.get("T_max", None) != getattr(scheduler, "T_max", None):
                raise CheckpointError(
                    f"--resume: param_scheduler[{i}]: the checkpoint's schedule ends at step {state.get('end')}, this "
                    f"run's at step {scheduler.end} (train_cfg.max_epochs={runner.max_epochs}); a resumed run "
                    f"continues its checkpoint's schedule. Resume with the train_cfg.max_epochs the run started "
                    f"with, or start a new run from its weights: --cfg-options load_from=CHECKPOINT without --resume")
