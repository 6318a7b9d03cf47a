"""``tools/train.py CONFIG``: train any xmodal config on mmengine's Runner."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from mmengine.dist import get_rank, is_distributed
from mmengine.runner import Runner

import xmodal.engine  # noqa: F401  (atomic checkpoint writes, trusted loading)
from xmodal.apis.config import (
    CfgOptionsAction,
    amp_for_this_machine,
    config_errors,
    enable_amp,
    load_config,
    require_keys,
)
from xmodal.apis.errors import cli_errors
from xmodal.apis.runner import add_default_hooks, run_header
from xmodal.apis.stages import is_staged, run_stages
from xmodal.engine.console import ConsoleProgressHook, QuietRunner
from xmodal.engine.lock import work_dir_lock
from xmodal.engine.rank_failure import fail_together
from xmodal.errors import CheckpointError, ConfigError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model or run a distillation recipe.")
    parser.add_argument("config", help="config file, e.g. configs/digits_av/teacher_fusion.py")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from the latest checkpoint in the work dir, or from the given file")
    parser.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction,
                        help="override config keys: key=value ...")
    parser.add_argument("--stage", type=int, help="staged recipes (stages=[...]): run only this stage (1-based)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--verbose", action="store_true",
                        help="print what goes to the log file (environment, config, hooks, every log line) "
                             "instead of the header, progress bar and one line per validation")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    return parser.parse_args(argv)


def build_runner(args: argparse.Namespace) -> Runner:
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    require_keys(cfg, ("train_dataloader", "train_cfg", "optim_wrapper"), "training")
    if args.amp:
        enable_amp(cfg)
    elif amp_for_this_machine(cfg):
        print("note: the config's AmpOptimWrapper needs CUDA; training with bf16 autocast on the CPU "
              "(CPUBf16OptimWrapper)")
    if args.resume == "auto":
        if not (Path(cfg.work_dir) / "last_checkpoint").is_file():
            raise CheckpointError(f"--resume: {cfg.work_dir} has no checkpoint to resume (no last_checkpoint); "
                                  f"train without --resume to start a new run, or name a file: --resume PATH")
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    verbose = getattr(args, "verbose", True)
    runner = (Runner if verbose else QuietRunner).from_cfg(cfg)
    add_default_hooks(runner, cfg)  # RNG state in checkpoints, non-finite loss guard, teacher cache
    if not verbose and runner.rank == 0:
        runner.register_hook(ConsoleProgressHook(run_header(args.config)))
    return runner


def train_runner(runner: Runner) -> None:
    """``runner.train()``; a failure stops the progress display first, so its error is printed last."""
    try:
        runner.train()
    finally:
        for hook in runner.hooks:
            if isinstance(hook, ConsoleProgressHook):
                hook.close()


def _run_stages(args: argparse.Namespace, cfg) -> None:
    """A staged recipe, each stage with the quiet console unless ``--verbose``."""
    if args.verbose:
        run_stages(cfg, resume=args.resume is not None, only=args.stage, amp=args.amp)
        return
    shown: list[ConsoleProgressHook] = []

    def hooks(number: int) -> list:
        name = cfg.stages[number - 1].get("name", "?")
        if _rank(cfg) != 0:
            return []
        shown.append(ConsoleProgressHook(run_header(f"{args.config} (stage {number}/{len(cfg.stages)}: {name})")))
        return shown[-1:]

    try:
        run_stages(cfg, resume=args.resume is not None, only=args.stage, amp=args.amp, hooks=hooks,
                   runner_class=QuietRunner)
    finally:
        for hook in shown:
            hook.close()


def _rank(cfg) -> int:
    """This process's rank; before the process group exists (CUDA runs start it in the Runner), the one
    its launcher set in the environment."""
    if is_distributed() or cfg.get("launcher", "none") == "none":
        return get_rank()
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or os.environ.get("OMPI_COMM_WORLD_RANK") or 0)


def _lock(cfg):
    """One run per work dir (rank 0 holds the lock for all ranks)."""
    return work_dir_lock(cfg.work_dir) if _rank(cfg) == 0 else contextlib.nullcontext()


@cli_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    # fail_together: in a distributed run, one rank's error stops every rank at once with the same message;
    # config_errors: a bad type or argument deep in the model is named by its config key
    with fail_together(), config_errors(cfg), _lock(cfg):
        if is_staged(cfg):
            if args.resume not in (None, "auto"):
                raise ConfigError(f"--resume {args.resume}: a staged recipe resumes from its stage directories; "
                                  f"use --resume alone")
            _run_stages(args, cfg)
            return
        if args.stage is not None:
            raise ConfigError(f"--stage: {args.config} has no 'stages' list")
        train_runner(build_runner(args))


if __name__ == "__main__":
    main()
