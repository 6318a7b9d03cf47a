"""Turning a config file plus command-line choices into the Config the Runner is built from."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from unittest import mock

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import init_dist, is_distributed

from xmodal.apis.errors import check_config, merge_cfg_options, missing_file_hint, read_config

# What each launcher needs in the environment; without it mmengine fails with a bare KeyError.
_LAUNCHER_ENV = {"pytorch": ("RANK", "start the command with torchrun (or python -m torch.distributed.run)"),
                 "slurm": ("SLURM_PROCID", "start the command with srun inside a Slurm allocation")}


def load_config(config: str | Path, cfg_options: dict | None = None, work_dir: str | None = None,
                launcher: str = "none") -> Config:
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {config}{missing_file_hint(path)}")
    cfg = read_config(path)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    check_config(cfg)  # unknown types and wrong-typed numbers fail here, before anything is built or written
    cfg.launcher = launcher
    if launcher != "none":
        setup_distributed(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    return cfg


def setup_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` for a distributed run (``cfg.launcher`` pytorch, slurm or mpi).

    Every machine: ``SyncBuffersHook`` averages buffers (BatchNorm statistics) across ranks after each
    epoch, so validation sees the same model on every rank and the checkpoint rank 0 writes holds the
    average. Without CUDA: a ``nccl`` (or unset) backend becomes ``gloo``, DDP wraps the CPU model
    without ``device_ids``, and the process group is started here, because mmengine's ``init_dist``
    pins a CUDA device first (``torch.cuda.set_device``) and fails; the Runner finds the group started
    and uses it.
    """
    needed = _LAUNCHER_ENV.get(cfg.launcher)
    if needed and needed[0] not in os.environ:
        raise ValueError(f"--launcher {cfg.launcher}: ${needed[0]} is not set; {needed[1]}, or use --launcher none")
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == "SyncBuffersHook" for h in hooks):
        cfg.custom_hooks = [*hooks, dict(type="SyncBuffersHook")]
    if torch.cuda.is_available():
        return
    cfg.env_cfg = dict(cfg.get("env_cfg") or {})
    dist_cfg = dict(cfg.env_cfg.get("dist_cfg") or {})
    if dist_cfg.get("backend", "nccl") == "nccl":
        dist_cfg["backend"] = "gloo"
    cfg.env_cfg.dist_cfg = dist_cfg
    wrapper = cfg.get("model_wrapper_cfg")
    if wrapper is None:  # mmengine's own default, less the GPU index it would pass as device_ids
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))
    elif wrapper.get("type", "MMDistributedDataParallel") == "MMDistributedDataParallel":
        wrapper.setdefault("device_ids", None)
    if not is_distributed():
        with mock.patch.object(torch.cuda, "set_device", lambda device: None):
            init_dist(cfg.launcher, **dist_cfg)


AMP_SWITCHABLE = ("OptimWrapper", "AmpOptimWrapper", "CPUBf16OptimWrapper")


def enable_amp(cfg: Config) -> None:
    """fp16 + dynamic loss scaling on CUDA (mmengine's AmpOptimWrapper); bf16 autocast on CPU."""
    wrapper = cfg.optim_wrapper
    if wrapper.get("type", "OptimWrapper") not in AMP_SWITCHABLE:
        raise ValueError(f"--amp: optim_wrapper type {wrapper['type']!r} cannot be switched to mixed precision; "
                         f"expected one of {', '.join(AMP_SWITCHABLE)}")
    if torch.cuda.is_available():
        wrapper.type = "AmpOptimWrapper"
        wrapper.setdefault("loss_scale", "dynamic")
    else:
        wrapper.type = "CPUBf16OptimWrapper"
        for key in ("loss_scale", "dtype", "use_fsdp"):  # AmpOptimWrapper's own arguments
            wrapper.pop(key, None)


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


class CfgOptionsAction(DictAction):
    """mmengine's ``--cfg-options`` parser; an entry that is not ``key=value`` is an argparse error
    (usage and exit status 2) naming the entry, instead of an exception from inside the parser."""

    _KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        for entry in values or []:
            key, equals, value = entry.partition("=")
            if not equals or not self._KEY.match(key):
                raise argparse.ArgumentError(self, f"{entry!r} is not KEY=VALUE with a dotted key "
                                             f"(e.g. train_cfg.max_epochs=2 or model.losses.0.weight=0.5)")
            if value.count("(") != value.count(")") or value.count("[") != value.count("]"):
                raise argparse.ArgumentError(self, f"{entry!r}: unbalanced brackets in the value")
        super().__call__(parser, namespace, values, option_string)
