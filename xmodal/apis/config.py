"""Turning a config file plus command-line choices into the Config the Runner is built from."""

from __future__ import annotations

from pathlib import Path

import torch
from mmengine.config import Config


def load_config(config: str | Path, cfg_options: dict | None = None, work_dir: str | None = None,
                launcher: str = "none") -> Config:
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {config}")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    return cfg


def enable_amp(cfg: Config) -> None:
    """fp16 + dynamic loss scaling on CUDA (mmengine's AmpOptimWrapper); bf16 autocast on CPU."""
    wrapper = cfg.optim_wrapper
    if wrapper.get("type", "OptimWrapper") not in ("OptimWrapper", "AmpOptimWrapper", "CPUBf16OptimWrapper"):
        raise ValueError(f"--amp: optim_wrapper type {wrapper['type']!r} cannot be switched to mixed precision")
    if torch.cuda.is_available():
        wrapper.type = "AmpOptimWrapper"
        wrapper.setdefault("loss_scale", "dynamic")
    else:
        wrapper.type = "CPUBf16OptimWrapper"


def set_max_epochs(cfg: Config, epochs: int) -> None:
    """Shorten or lengthen training, keeping epoch-based schedules spanning the whole run: a schedule
    that ended with the old run ends with the new one, a warm-up keeps its length, and a schedule
    that would start after the new end is dropped."""
    old = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    kept = []
    for scheduler in cfg.get("param_scheduler") or []:
        if scheduler.get("by_epoch", True):
            begin = scheduler.get("begin", 0)
            if begin >= epochs:
                continue
            if scheduler.get("end", old) >= old or scheduler.get("end", old) > epochs:
                scheduler["end"] = epochs
                if "T_max" in scheduler:
                    scheduler["T_max"] = epochs - begin
        kept.append(scheduler)
    if cfg.get("param_scheduler") is not None:
        cfg.param_scheduler = kept
