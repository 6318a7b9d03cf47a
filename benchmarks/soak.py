"""Soak: a long training run keeps its memory and open files flat (no leak per iteration or epoch).

    python benchmarks/soak.py [--recipes mst kd-cached] [--iters 2000] [--every 100] [--warmup 200]
        [--batch-size 16] [--quick]

Each recipe is trained by the real mmengine Runner, built as ``tools/train.py`` builds it
(``Runner.from_cfg`` plus the default hooks), with everything a long run does once per epoch:
validation, a checkpoint per epoch (``max_keep_ckpts=1``, so old ones are deleted), the best
checkpoint, the student export, the logger and the TensorBoard and local visualizer backends.
Weights are random (memory does not depend on them), so no checkpoint is needed:

- ``mst``: stage 3 of ``configs/mst_distill/mst_digits_image.py`` (``MSTRouterDistiller``) without
  its stage-2 input (``init_from`` dropped), with the teacher cache (``TeacherCacheHook``: the
  experts' logits memory-mapped), ``RouterHook`` (router usage to the log, the visualizer and
  ``router_usage.jsonl`` every epoch), ``StudentExportHook`` and the best-by-validation-loss checkpoint.
- ``kd-cached``: ``configs/digits_av/kd_image_from_fusion.py`` (``Distiller``) with
  ``teacher_cache=dict()`` (``DistillerCacheHook``) and a random-init teacher.

The batch size is shrunk (default 16) so that 2,000 iterations cross many epochs: about 30
validations, checkpoints and exports. Every ``--every`` iterations the resident memory (RSS,
``/proc/self/statm``) and the number of open file descriptors (``/proc/self/fd``) are sampled and
printed as a table. "growth" compares the last sample with the one at ``--warmup`` iterations
(allocator pools, the cache's pages and the first checkpoint are in place by then); a run passes
below 5 % RSS growth and with no more open files at the end than after the warm-up. Each recipe
runs in a process of its own, so neither inherits the other's heap or files; the exit status is 1
when one grows.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPES = ("mst", "kd-cached")
LIMIT = 5.0  # % RSS growth after the warm-up


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--mst-config", default=str(REPO / "configs/mst_distill/mst_digits_image.py"))
    parser.add_argument("--kd-config", default=str(REPO / "configs/digits_av/kd_image_from_fusion.py"))
    parser.add_argument("--iters", type=int, default=2000, help="training iterations at least (whole epochs)")
    parser.add_argument("--every", type=int, default=100, help="sample RSS and open files every N iterations")
    parser.add_argument("--warmup", type=int, default=200, help="growth is measured from this iteration on")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch (small: many epochs)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="a few epochs: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.every, args.warmup = 150, 25, 50
    if args.every < 1 or args.iters < 1 or not 0 <= args.warmup < args.iters:
        parser.error("expected --iters >= 1, --every >= 1 and 0 <= --warmup < --iters")
    return args


# -- what is measured ------------------------------------------------------------------------------
def rss_mib() -> float:
    """Resident memory now; where /proc is missing, the peak so far (``ru_maxrss``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def open_fds() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return len(os.listdir(folder)) - 1  # listing the folder opens one
    return -1


class SoakHook(Hook):
    """Samples RSS and open files after every ``every``-th training iteration."""

    priority = "LOWEST"  # after the checkpoint, logger and router hooks of the same iteration

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: list[tuple[int, int, float, int, float]] = []  # iteration, epoch, RSS MiB, fds, seconds
        self.start = time.perf_counter()

    def sample(self, iteration: int, epoch: int) -> None:
        self.rows.append((iteration, epoch, rss_mib(), open_fds(), time.perf_counter() - self.start))

    def before_train(self, runner) -> None:
        self.start = time.perf_counter()
        self.sample(runner.iter, runner.epoch)  # after the cache hook (priority HIGH) built the cache

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if (runner.iter + 1) % self.every == 0:
            self.sample(runner.iter + 1, runner.epoch)

    def after_train(self, runner) -> None:
        if self.rows[-1][0] != runner.iter:
            self.sample(runner.iter, runner.epoch)


# -- configs ---------------------------------------------------------------------------------------
def _repo_path(path: str) -> str:
    """Config paths inside configs are relative to the repository root; resolve them from anywhere."""
    return str(REPO / path) if not Path(path).is_absolute() and (REPO / path).exists() else path


def mst_config(path: str) -> Config:
    """The staged recipe's last stage with its teacher cache, without its previous stage's weights."""
    from xmodal.apis.config import load_config
    from xmodal.apis.stages import is_staged, stage_config

    cfg = load_config(path)
    if not is_staged(cfg):
        raise ValueError(f"{path}: --mst-config expects a staged recipe (stages=[...])")
    scfg = stage_config(cfg, len(cfg.stages))
    scfg.model.pop("init_from", None)
    if scfg.model.get("teacher_cache") is None:
        raise ValueError(f"{path}: the last stage's model has no teacher_cache")
    return scfg


def kd_config(path: str) -> Config:
    """The Distiller recipe with random-init teachers and the teacher cache on."""
    from xmodal.apis.config import load_config

    cfg = load_config(path)
    if (cfg.get("model") or {}).get("type") != "Distiller":
        raise ValueError(f"{path}: --kd-config expects a Distiller recipe (model.type='Distiller')")
    for spec in cfg.model.teachers.values():
        spec.pop("checkpoint", None)
        spec["allow_random_init"] = True
        if "config" in spec:
            spec["config"] = _repo_path(spec["config"])
    cfg.model.teacher_cache = dict()
    return cfg


def prepare(cfg: Config, args: argparse.Namespace, work_dir: str) -> tuple[Config, int]:
    """Shrink the batch and run enough whole epochs for ``--iters`` iterations; quiet console."""
    from xmodal.apis.config import set_max_epochs
    from xmodal.registry import DATASETS

    cfg.work_dir = work_dir
    cfg.load_from, cfg.resume = None, False
    cfg.log_level = "ERROR"  # the log file still gets every line; the console stays for the table
    loader = cfg.train_dataloader
    loader.batch_size = args.batch_size
    samples = len(DATASETS.build(loader.dataset))
    per_epoch = samples // loader.batch_size if loader.get("drop_last") else math.ceil(samples / loader.batch_size)
    cfg.train_cfg.val_interval = 1
    set_max_epochs(cfg, math.ceil(args.iters / per_epoch))  # the schedules end with the run, as with --cfg-options
    return cfg, per_epoch


# -- one recipe ------------------------------------------------------------------------------------
def run_recipe(name: str, args: argparse.Namespace) -> tuple[str, list, int, float]:
    from mmengine.runner import Runner

    from xmodal.apis.runner import add_default_hooks

    with tempfile.TemporaryDirectory(prefix=f"soak-{name}-") as work_dir:
        cfg = mst_config(args.mst_config) if name == "mst" else kd_config(args.kd_config)
        cfg, per_epoch = prepare(cfg, args, work_dir)
        runner = Runner.from_cfg(cfg)
        add_default_hooks(runner, cfg)
        hook = SoakHook(args.every)
        runner.register_hook(hook)
        start = time.perf_counter()
        runner.train()
        wall = time.perf_counter() - start
        model_type = cfg.model.get("type")
        runner.visualizer.close()
        left = work_dir_summary(Path(work_dir))
    return f"{name}: {model_type}", hook.rows, per_epoch, wall, left


def work_dir_summary(work_dir: Path) -> str:
    """What the run left: shows that checkpoints, exports and the router log were written (and old ones removed)."""
    parts = []
    for path in sorted(work_dir.iterdir()):
        if path.suffix == ".jsonl":
            parts.append(f"{path.name} ({len(path.read_text().splitlines())} lines)")
        elif path.is_dir():
            parts.append(f"{path.name}/ ({sum(1 for p in path.rglob('*') if p.is_file())} files)")
        else:
            parts.append(path.name)
    return ", ".join(parts)


def growth(rows: list, warmup: int) -> tuple[tuple, tuple, float, int]:
    """The sample at the warm-up, the last one, RSS growth in %, and the change in open files."""
    base = next((r for r in rows if r[0] >= warmup), rows[0])
    last = rows[-1]
    return base, last, 100.0 * (last[2] - base[2]) / base[2], last[3] - base[3]


def report(title: str, rows: list, per_epoch: int, wall: float, left: str, args: argparse.Namespace) -> bool:
    print(f"\n{title}, batch {args.batch_size}, {per_epoch} iterations/epoch, {rows[-1][0]} iterations, "
          f"{wall:.0f} s with the cache build, {torch.get_num_threads()} threads")
    print(f"{'iteration':>9} {'epoch':>6} {'RSS MiB':>9} {'open fds':>9} {'seconds':>8}")
    for iteration, epoch, rss, fds, seconds in rows:
        print(f"{iteration:>9} {epoch:>6} {rss:>9.1f} {fds:>9} {seconds:>8.1f}")
    base, last, rss_growth, fd_growth = growth(rows, args.warmup)
    after = [r for r in rows if r[0] >= base[0]]
    peak = max(r[2] for r in after)
    ok = rss_growth < LIMIT and fd_growth <= 0
    print(f"growth after warm-up (iteration {base[0]} -> {last[0]}): RSS {base[2]:.1f} -> {last[2]:.1f} MiB "
          f"({rss_growth:+.2f} %; peak {peak:.1f} MiB, {100 * (peak - base[2]) / base[2]:+.2f} %), open fds "
          f"{base[3]} -> {last[3]} ({fd_growth:+d}): {'flat' if ok else 'GROWS'} (limit {LIMIT:.0f} % RSS, 0 fds)")
    if last[0] > base[0]:
        print(f"RSS slope after warm-up: {1000 * (last[2] - base[2]) / (last[0] - base[0]):+.3f} MiB per 1,000 "
              f"iterations")
    print(f"work dir at the end: {left}")
    return ok


def main(argv=None) -> int:
    from mmengine.registry import init_default_scope

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if len(args.recipes) > 1:  # one process per recipe: each starts from a clean heap and its own open files
        argv = list(sys.argv[1:] if argv is None else argv)
        at = argv.index("--recipes") if "--recipes" in argv else len(argv)
        rest = argv[:at] + [a for a in argv[at + 1:] if a not in RECIPES]
        codes = [subprocess.run([sys.executable, __file__, *rest, "--recipes", name]).returncode
                 for name in args.recipes]
        return max(codes)
    init_default_scope("xmodal")
    return 0 if report(*run_recipe(args.recipes[0], args), args) else 1


if __name__ == "__main__":
    from xmodal.apis.errors import cli_errors

    sys.exit(cli_errors(main)())
