"""Runner assembly: the hooks every run gets whatever its config lists.

It lives above the distillers and the engine, so the engine's hooks need not know about the
distillers' teacher cache.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import IterBasedTrainLoop, Runner

from xmodal.distill.base import BaseDistiller
from xmodal.engine.config_text import format_config_text_once
from xmodal.engine.hooks import LabelBudgetHook, ResumeScheduleCheck, RNGStateHook
from xmodal.engine.nan_guard import NonFiniteLossGuard
from xmodal.engine.rank_failure import watch_peers
from xmodal.engine.unwrap import unwrap
from xmodal.registry import HOOKS


def add_default_hooks(runner: Runner, cfg: Config) -> None:
    """Hooks every training run gets whatever its config lists: :class:`RNGStateHook` (exact resume),
    :class:`ResumeScheduleCheck` (a resume with another schedule length is refused),
    the non-finite loss guard (the config's ``nan_guard`` entry), :class:`LabelBudgetHook`
    (``labelled_ids.json``) and, for a distiller whose config switches ``teacher_cache`` on, the hook
    that builds the cache before training (the distiller's ``cache_hook``)."""
    format_config_text_once(runner)  # checkpoints store the config text; format it once, not per save
    watch_peers()  # a run on GPUs starts its process group in the Runner: watch the other ranks from now on
    if not any(isinstance(hook, RNGStateHook) for hook in runner.hooks):
        runner.register_hook(RNGStateHook())
    model = unwrap(runner.model)
    cache_hook = model.cache_hook if isinstance(model, BaseDistiller) and model.cache_enabled else None
    if cache_hook and not any(type(hook).__name__ == cache_hook for hook in runner.hooks):
        runner.register_hook(HOOKS.build(dict(type=cache_hook)))
    guard = NonFiniteLossGuard.from_config(cfg.get("nan_guard"))
    if guard is not None and not any(isinstance(hook, NonFiniteLossGuard) for hook in runner.hooks):
        runner.register_hook(guard)
    if not any(isinstance(hook, LabelBudgetHook) for hook in runner.hooks):
        runner.register_hook(LabelBudgetHook())
    if not any(isinstance(hook, ResumeScheduleCheck) for hook in runner.hooks):
        runner.register_hook(ResumeScheduleCheck())


def _device(model) -> str:
    try:
        return str(next(model.parameters()).device)
    except StopIteration:
        return "cpu"


@contextlib.contextmanager
def rng_preserved() -> Iterator[None]:
    """Leave Python's, numpy's and torch's random states as they were (a data loader draws a seed when
    it is iterated): a run resumed from a checkpoint must draw exactly what the uninterrupted run drew."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
        yield
    random.setstate(states[0])
    np.random.set_state(states[1])


@torch.no_grad()
def teacher_val_accuracy(runner: Runner) -> dict[str, float | str]:
    """Each teacher of a distiller evaluated once on the validation split: its accuracy, or why it has
    none (no logits, a modality the split does not load). Shows that the teachers loaded right. The
    random states are left untouched, so training draws the same numbers with or without it."""
    model, val = unwrap(runner.model), _val_dataloader(runner)
    if not isinstance(model, BaseDistiller) or val is None:
        return {}
    with rng_preserved():
        return _teacher_accuracy(model, val)


def _val_dataloader(runner: Runner):
    """The validation data loader; None for a config without validation (``runner.val_dataloader`` raises)."""
    return getattr(runner.val_loop, "dataloader", None)


def _teacher_accuracy(model: BaseDistiller, dataloader) -> dict[str, float | str]:
    results: dict[str, float | str] = {}
    for name, teacher in model.teachers.items():
        correct = total = 0
        for batch in dataloader:
            batch = model.data_preprocessor(batch, False)
            missing = [m for m in getattr(teacher, "modalities", ()) if m not in batch]
            if missing:
                results[name] = f"not measured: the val split does not load {missing}"
                break
            logits = teacher(batch, mode="tensor").get("logits")
            if logits is None or "label" not in batch:
                results[name] = "not measured: no logits"
                break
            labels = batch["label"]
            keep = labels >= 0
            correct += int((logits.argmax(-1)[keep] == labels[keep]).sum())
            total += int(keep.sum())
        else:
            results[name] = correct / total if total else "not measured: no labelled val samples"
    return results


def _size(dataloader) -> str:
    if dataloader is None:
        return "-"
    try:
        return str(len(dataloader.dataset))
    except (TypeError, AttributeError):
        return "?"


def _schedule_line(runner: Runner) -> str:
    if isinstance(runner.train_loop, IterBasedTrainLoop):
        return f"  schedule  {runner.max_iters} iterations" + (f", resumed at {runner.iter}" if runner.iter else "")
    return (f"  schedule  {runner.max_epochs} epochs x {len(runner.train_dataloader)} iterations"
            + (f", resumed at epoch {runner.epoch}" if runner.epoch else ""))


def run_header(config: str) -> Callable[[Runner], list[str]]:
    """The lines ``tools/train.py`` prints before training: config, work dir, device, data sizes and,
    for a distiller, each teacher's measured validation accuracy."""

    def header(runner: Runner) -> list[str]:
        model = unwrap(runner.model)
        student = model.student if isinstance(model, BaseDistiller) else model
        modalities = "+".join(getattr(student, "modalities", ()) or ()) or "-"
        lines = [f"[bold]xmodal train[/bold] {config}",
                 f"  work dir  {runner.work_dir}  (full log: {runner.log_dir})",
                 f"  model     {type(model).__name__}, student reads {modalities}; device {_device(model)}",
                 f"  data      train {_size(runner.train_dataloader)}, val {_size(_val_dataloader(runner))} samples"
                 f" ({type(runner.train_dataloader.dataset).__name__})",
                 _schedule_line(runner)]
        for name, accuracy in teacher_val_accuracy(runner).items():
            shown = f"val accuracy {accuracy:.4f}" if isinstance(accuracy, float) else accuracy
            lines.append(f"  teacher   {name}: {shown}")
        return lines

    return header
