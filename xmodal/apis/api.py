"""The Python API behind ``from xmodal.apis import fit, evaluate, load_student, export_student``: what the
commands do, as calls that return their results (docs/api.md)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from xmodal.apis import export as export_api
from xmodal.apis import test as test_api
from xmodal.apis import train as train_api
from xmodal.apis.config import close_matches, config_errors, load_config, read_config
from xmodal.apis.stages import is_staged, run_stages
from xmodal.engine.checkpoint import resolve_checkpoint
from xmodal.engine.hooks import EpochHistoryHook
from xmodal.engine.lock import work_dir_lock
from xmodal.errors import CheckpointError, ConfigError

# keyword shortcuts for the overrides a notebook changes most
SHORTCUTS = {"epochs": "train_cfg.max_epochs", "seed": "randomness.seed", "lr": "optim_wrapper.optimizer.lr",
             "batch_size": "train_dataloader.batch_size"}


@dataclasses.dataclass
class TrainResult:
    """What :func:`fit` returns: the work dir, the last validation's metrics, the best checkpoint (None
    when the config saves none) and the mean training loss and validation metrics of every epoch."""

    work_dir: Path
    metrics: dict[str, float]
    best_checkpoint: Path | None
    history: list[dict]


def overrides_to_options(config: str | Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword overrides as ``--cfg-options`` entries: a shortcut (``epochs=2``), a top-level key of the
    config (``train_cfg=dict(max_epochs=2)``, merged into it) or a dotted key given through
    ``cfg_options``. An unknown key is refused with the nearest valid one."""
    cfg = read_config(config)
    options: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in SHORTCUTS:
            options[SHORTCUTS[key]] = value
        elif key in cfg:
            options[key] = value
        else:
            valid = sorted([*SHORTCUTS, *cfg.keys()])
            near = close_matches(key, valid)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else \
                f"; expected one of {', '.join(SHORTCUTS)} or a top-level key of the config"
            raise ConfigError(f"{config}: override {key!r}: not a key of the config{hint} (a nested key goes "
                              f"through cfg_options={{'{key}.sub_key': value}})")
    return options


def fit(config: str | Path, work_dir: str | Path | None = None, *, resume: bool = False, amp: bool = False,
        verbose: bool = False, cfg_options: dict[str, Any] | None = None, **overrides: Any) -> TrainResult:
    """Train ``config`` as ``tools/train.py`` does (same checks, hooks, work dir lock and console) and
    return the work dir and the final metrics. ``overrides``: see :func:`overrides_to_options`, e.g.
    ``fit("configs/digits_av/student_image.py", epochs=2, seed=1)``."""
    options = {**overrides_to_options(config, overrides), **(cfg_options or {})}
    args = argparse.Namespace(config=str(config), cfg_options=options or None,
                              work_dir=None if work_dir is None else str(work_dir),
                              launcher="none", resume="auto" if resume else None, amp=amp, verbose=verbose,
                              stage=None)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    history = EpochHistoryHook()
    with config_errors(cfg), work_dir_lock(cfg.work_dir):
        if is_staged(cfg):
            best = run_stages(cfg, resume=resume, amp=amp, hooks=lambda stage: [history])
        else:
            runner = train_api.build_runner(args)
            runner.register_hook(history)
            train_api.train_runner(runner)
            best = _best(cfg.work_dir)
    last = history.history[-1] if history.history else {}
    metrics = {k: float(v) for k, v in last.items() if k not in ("epoch", "train_loss")}
    return TrainResult(Path(cfg.work_dir), metrics, best, history.history)


def _best(work_dir: str) -> Path | None:
    try:
        return resolve_checkpoint(work_dir)
    except (CheckpointError, FileNotFoundError):  # a config that saves no checkpoint
        return None


def evaluate(config: str | Path, checkpoint: str | Path, work_dir: str | Path | None = None,
             out: str | Path | None = None, cfg_options: dict[str, Any] | None = None, **overrides: Any) -> dict:
    """``tools/test.py``: the test-split metrics of ``checkpoint`` (a file or a work dir) under ``config``."""
    options = {**overrides_to_options(config, overrides), **(cfg_options or {})}
    return test_api.evaluate(str(config), str(checkpoint), None if out is None else str(out),
                             None if work_dir is None else str(work_dir), options or None)


def load_student(config: str | Path, checkpoint: str | Path) -> nn.Module:
    """The student of ``config`` (a distiller's ``student``, else the model) with the weights of
    ``checkpoint``, in eval mode: ``load_student(cfg, ckpt)(batch, mode="predict")`` or ``(image=x)``."""
    student, _, _, _ = export_api.load_student(str(config), str(checkpoint))
    return student


def export_student(config: str | Path, checkpoint: str | Path, out: str | Path, onnx: str | Path | None = None,
                   force: bool = False) -> dict:
    """``tools/export.py``: write the student-only checkpoint ``out`` (and its ONNX graph, checked against
    PyTorch with onnxruntime); returns what was written."""
    return export_api.export(str(config), str(checkpoint), str(out), None if onnx is None else str(onnx),
                             force=force)


__all__ = ["TrainResult", "fit", "evaluate", "load_student", "export_student"]
