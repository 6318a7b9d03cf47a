"""Where the training time goes: the KD recipe and MST-Distill stage 3, component by component.

    python benchmarks/profile_recipes.py [--recipes kd mst mst-cached] [--iters 200] [--warmup 20]
        [--threads N] [--batch-size B] [--torch-profiler DIR] [--quick]

Each recipe is trained by the real mmengine Runner, built as ``tools/train.py`` builds it
(``Runner.from_cfg`` plus the default hooks), with every hook, the logger, validation and
checkpointing of the config. Weights are random (speed does not depend on them), so no
checkpoint is needed:

- ``kd``: ``configs/digits_av/kd_image_from_fusion.py``, the Distiller with a frozen fusion teacher
  and an image student; the teacher's checkpoint is replaced by ``allow_random_init``.
- ``mst``: ``configs/mst_distill/mst_digits_image.py`` stage 3 (``MSTRouterDistiller``) without its
  stage-2 input (``init_from`` dropped) and with the teacher cache switched off: every step runs
  every teacher once per expert, with that expert's MaskNets hooked into the teacher.
- ``mst-cached``: the same stage as the config runs it: the experts' logits are computed once
  before training (the time is printed) and read from the memory-mapped cache each step.

The pieces are timed without touching the code under test: module forward pre/post hooks on the
data preprocessor, the teachers, the MaskNets, the student, the GateNet and the whole model;
gradient hooks on the loss tensors (backward starts when the first one fires) and the optimizer's
step pre/post hooks (backward ends at the step); a first and a last Runner hook per iteration,
whose gap is the dataloader's ``next()``. "loss computation" is the model's loss forward less
the modules inside it (loss terms, task loss, and their glue); "other" is the rest of the
iteration as the train loop runs it: the Runner hooks, loss parsing, ``zero_grad``, logging.
Work done once per epoch (validation, checkpoints, epoch hooks) is reported apart, split by Runner
event. mmengine's own IterTimerHook means over the same iterations are printed as a cross-check. On
CUDA every boundary synchronises the device, so each piece includes its kernels.

``--torch-profiler DIR`` also records a few iterations after the warm-up (not timed) with
``torch.profiler`` and writes ``DIR/<recipe>.json`` (chrome://tracing or https://ui.perfetto.dev),
with the module forwards and the optimizer step marked as ranges, and prints the top operators.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPES = ("kd", "mst", "mst-cached")
# table rows: (component key, label); sub-rows are parts of the row above, not added to the total
ROWS = (("data", "data loading (dataloader next)"), ("preprocess", "data preprocessor / host-to-device"),
        ("teacher", "teacher forward"), ("masks", "  of which MaskNets"), ("student", "student forward"),
        ("router", "router (GateNet) forward"), ("loss", "loss computation"), ("backward", "backward"),
        ("step", "optimizer step"), ("other", "other (hooks, logging, loss parsing, zero_grad)"))
SUB_ROWS = {"masks"}
# once-per-epoch work, timed between the first and the last hook of each event
EPOCH_PARTS = ("after_train_epoch hooks (checkpoint, ...)", "validation (forward + metrics)",
               "after_val_epoch hooks (best checkpoint, ...)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--kd-config", default=str(REPO / "configs/digits_av/kd_image_from_fusion.py"))
    parser.add_argument("--mst-config", default=str(REPO / "configs/mst_distill/mst_digits_image.py"))
    parser.add_argument("--iters", type=int, default=200,
                        help="timed iterations at least (the run ends with its epoch, so a few more may be timed)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed iterations first")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--torch-profiler", metavar="DIR", help="write a torch.profiler chrome trace per recipe")
    parser.add_argument("--profile-iters", type=int, default=5, help="iterations the torch profiler records")
    parser.add_argument("--verbose", action="store_true", help="keep the Runner's INFO log on the console")
    parser.add_argument("--quick", action="store_true", help="a few iterations: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.warmup, args.profile_iters = 4, 2, 2
    for name in ("iters", "profile_iters"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


# -- configs ---------------------------------------------------------------------------------------
def _repo_path(path: str) -> str:
    """Config paths inside configs are relative to the repository root; resolve them from anywhere."""
    return str(REPO / path) if not Path(path).is_absolute() and (REPO / path).exists() else path


def kd_config(path: str) -> Config:
    """The Distiller recipe with random-init teachers (no checkpoint needed)."""
    from xmodal.apis.config import load_config

    cfg = load_config(path)
    model_type = (cfg.get("model") or {}).get("type")
    if model_type != "Distiller":
        raise ValueError(f"{path}: --kd-config expects a Distiller recipe (model.type='Distiller'), "
                         f"got model.type={model_type!r}")
    for spec in cfg.model.teachers.values():
        spec.pop("checkpoint", None)
        spec["allow_random_init"] = True
        if "config" in spec:
            spec["config"] = _repo_path(spec["config"])
    return cfg


def mst_config(path: str, cached: bool) -> Config:
    """The staged recipe's last stage, without its previous stage's weights; ``cached``: as configured
    (the model's teacher_cache: TeacherCacheHook builds the expert cache), else the cache is off and
    teachers run every step."""
    from xmodal.apis.config import load_config
    from xmodal.apis.stages import is_staged, stage_config

    cfg = load_config(path)
    if not is_staged(cfg):
        raise ValueError(f"{path}: --mst-config expects a staged recipe (stages=[...])")
    scfg = stage_config(cfg, len(cfg.stages))
    scfg.model.pop("init_from", None)
    if scfg.model.get("teacher_cache") is None:
        if cached:
            raise ValueError(f"{path}: the last stage's model has no teacher_cache, so 'mst-cached' has nothing to "
                             f"profile")
    else:
        scfg.model.teacher_cache = {**scfg.model.teacher_cache, "enabled": cached}
    return scfg


def prepare(cfg: Config, args: argparse.Namespace, work_dir: str) -> tuple[Config, int, int]:
    """Size the run: enough whole epochs for warm-up + profiled + timed iterations."""
    from xmodal.registry import DATASETS

    cfg.work_dir = work_dir
    cfg.load_from, cfg.resume = None, False
    if not args.verbose:
        cfg.log_level = "ERROR"
    loader = cfg.train_dataloader
    if args.batch_size:
        loader.batch_size = args.batch_size
    samples = len(DATASETS.build(loader.dataset))
    per_epoch = samples // loader.batch_size if loader.get("drop_last") else math.ceil(samples / loader.batch_size)
    # profiling: one more untimed iteration, so stopping the profiler and writing the trace stay out of every
    # timed window (mmengine's IterTimerHook, the cross-check, starts its window before the trace is written)
    untimed = args.warmup + (args.profile_iters + 1 if args.torch_profiler else 0)
    epochs = math.ceil((untimed + args.iters) / per_epoch)
    cfg.train_cfg = dict(cfg.train_cfg, max_epochs=epochs)
    return cfg, untimed, per_epoch


# -- timing ----------------------------------------------------------------------------------------
class Profile:
    """Seconds per component over the timed iterations, fed by module, tensor, optimizer and Runner hooks."""

    def __init__(self, first_timed: int, profile_from: int | None, profile_iters: int, trace: Path | None) -> None:
        self.first_timed, self.profile_from, self.profile_iters, self.trace = first_timed, profile_from, \
            profile_iters, trace
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.iter_times: list[float] = []
        self.epoch_gaps: list[float] = []
        self.epoch_parts: dict[str, float] = defaultdict(float)  # within the gaps, per Runner event
        self._opened: dict[str, float] = {}
        self.before_train_start = self.before_train_s = 0.0
        self.samples = 0
        self.sync = False
        self.active = False  # inside a timed iteration (validation and cache building run modules too)
        self.ranges = False  # inside a profiled iteration: mark the pieces in the trace
        self.last_end: float | None = None
        self.last_iter = -1
        self.backward_start: float | None = None
        self.profiler = None
        self.top_ops = ""
        self.mmengine: tuple[float, float] | None = None

    def now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def time_modules(self, key: str, modules: list[nn.Module]) -> None:
        for module in modules:
            starts: list[tuple[float, object]] = []

            def pre(_module, _inputs, starts=starts, key=key):
                if self.active or self.ranges:
                    mark = torch.profiler.record_function(key) if self.ranges else None
                    if mark is not None:
                        mark.__enter__()
                    starts.append((self.now(), mark))

            def post(_module, _inputs, output, starts=starts, key=key):
                if not starts:
                    return
                start, mark = starts.pop()
                if mark is not None:
                    mark.__exit__(None, None, None)
                if self.active:
                    self.seconds[key] += self.now() - start
                    self.calls[key] += 1
                if key == "model" and self.active and isinstance(output, dict):
                    self._watch_backward(output)

            module.register_forward_pre_hook(pre)
            module.register_forward_hook(post)

    def _watch_backward(self, losses: dict) -> None:
        """Backward starts when the gradient reaches the first loss term (the sum above them is trivial)."""
        self.backward_start = None

        def started(grad):
            if self.backward_start is None:
                self.backward_start = self.now()
            return grad

        for value in losses.values():
            if isinstance(value, torch.Tensor) and value.requires_grad:
                value.register_hook(started)

    def watch_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        state = {}

        def pre(*_):
            t = self.now()
            if self.active and self.backward_start is not None:
                self.seconds["backward"] += t - self.backward_start
            state["start"] = t
            state["mark"] = torch.profiler.record_function("step") if self.ranges else None
            if state["mark"] is not None:
                state["mark"].__enter__()

        def post(*_):
            if state.get("mark") is not None:
                state["mark"].__exit__(None, None, None)
            if self.active:
                self.seconds["step"] += self.now() - state["start"]

        optimizer.register_step_pre_hook(pre)
        optimizer.register_step_post_hook(post)

    # Runner side: FirstHook runs before every other hook of an iteration, LastHook after all of them
    def iteration_start(self, runner, data_batch) -> None:
        t = self.now()
        self.active = runner.iter >= self.first_timed
        if self.active:
            self.seconds["data"] += t - self.last_end
            if isinstance(data_batch, dict) and isinstance(data_batch.get("label"), torch.Tensor):
                self.samples += len(data_batch["label"])
        if self.profile_from is not None and runner.iter == self.profile_from:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.sync:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()
        self.ranges = self.profiler is not None

    def iteration_end(self, runner) -> None:
        t = self.now()
        if self.active:
            self.iter_times.append(t - self.last_end)
        self.active = False
        if self.profiler is not None and runner.iter + 1 == self.profile_from + self.profile_iters:
            self.profiler.stop()
            self.trace.parent.mkdir(parents=True, exist_ok=True)
            self.profiler.export_chrome_trace(str(self.trace))
            self.top_ops = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
            self.profiler, self.ranges = None, False
            t = self.now()  # the trace export is no part of the next iteration's data loading
        self.last_end, self.last_iter = t, runner.iter

    def epoch_start(self) -> None:
        t = self.now()
        if self.last_end is not None and self.last_iter >= self.first_timed:
            self.epoch_gaps.append(t - self.last_end)
        self.last_end = t

    def train_end(self) -> None:
        self.epoch_start()

    def open(self, part: str) -> None:
        self._opened[part] = self.now()

    def close(self, part: str) -> None:
        start = self._opened.pop(part, None)
        if start is not None and self.last_iter >= self.first_timed:
            self.epoch_parts[part] += self.now() - start


class FirstHook(Hook):
    priority = "HIGHEST"

    def __init__(self, profile: Profile, model: nn.Module) -> None:
        self.profile, self.model = profile, model

    def before_train(self, runner) -> None:
        self.profile.sync = next(self.model.parameters()).is_cuda
        self.profile.before_train_start = self.profile.now()

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.profile.iteration_start(runner, data_batch)

    def after_train_epoch(self, runner) -> None:
        self.profile.open(EPOCH_PARTS[0])

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.profile.close(EPOCH_PARTS[1])
        self.profile.open(EPOCH_PARTS[2])

    def after_train(self, runner) -> None:
        self.profile.train_end()


class LastHook(Hook):
    priority = "LOWEST"

    def __init__(self, profile: Profile, model: nn.Module) -> None:
        self.profile, self.model = profile, model

    def before_train(self, runner) -> None:
        # after every other before_train hook: the optimizer exists, TeacherCacheHook has built its cache
        self.profile.before_train_s = self.profile.now() - self.profile.before_train_start
        self.profile.watch_optimizer(runner.optim_wrapper.optimizer)
        cache = getattr(self.model, "_cache", None)
        if cache is not None and hasattr(self.model, "attach_cache"):
            self.model.attach_cache(TimedRows(cache, self.profile))

    def before_train_epoch(self, runner) -> None:
        self.profile.epoch_start()

    def after_train_epoch(self, runner) -> None:
        self.profile.close(EPOCH_PARTS[0])

    def before_val_epoch(self, runner) -> None:
        self.profile.open(EPOCH_PARTS[1])

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.profile.close(EPOCH_PARTS[2])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.profile.iteration_end(runner)


class TimedRows:
    """The MST expert cache with its row reads timed as the teachers' share (they replace the forwards)."""

    def __init__(self, array, profile: Profile) -> None:
        self.array, self.profile = array, profile

    def __getitem__(self, rows):
        start = self.profile.now()
        out = self.array[rows]
        if self.profile.active:
            self.profile.seconds["teacher"] += self.profile.now() - start
            self.profile.calls["teacher"] += 1
        return out

    def __len__(self) -> int:
        return len(self.array)


# -- one recipe ------------------------------------------------------------------------------------
def run_recipe(name: str, args: argparse.Namespace) -> None:
    from mmengine.runner import Runner

    from xmodal.apis.runner import add_default_hooks
    from xmodal.engine.unwrap import unwrap

    with tempfile.TemporaryDirectory(prefix=f"profile-{name}-") as work_dir:
        cfg = kd_config(args.kd_config) if name == "kd" else mst_config(args.mst_config, cached=name == "mst-cached")
        cfg, untimed, per_epoch = prepare(cfg, args, work_dir)
        runner = Runner.from_cfg(cfg)
        add_default_hooks(runner, cfg)
        model = unwrap(runner.model)
        trace = Path(args.torch_profiler) / f"{name}.json" if args.torch_profiler else None
        profile = Profile(untimed, args.warmup if trace else None, args.profile_iters, trace)
        profile.time_modules("model", [model])
        profile.time_modules("preprocess", [model.data_preprocessor])
        profile.time_modules("student", [model.student])
        profile.time_modules("teacher", list(model.teachers.values()))
        if hasattr(model, "masks"):
            profile.time_modules("masks", list(model.masks))
        if hasattr(model, "gate"):
            profile.time_modules("router", [model.gate])
        runner.register_hook(FirstHook(profile, model))
        runner.register_hook(LastHook(profile, model))
        start = time.perf_counter()
        runner.train()
        wall = time.perf_counter() - start
        profile.mmengine = mmengine_iter_times(runner, len(profile.iter_times))
    report(name, args.kd_config if name == "kd" else args.mst_config, cfg, profile, per_epoch, wall)


def mmengine_iter_times(runner, n: int) -> tuple[float, float] | None:
    """IterTimerHook's own means (ms) of iteration and data time over the last ``n`` iterations: a cross-check."""
    hub = runner.message_hub
    if "train/time" not in hub.log_scalars or "train/data_time" not in hub.log_scalars:
        return None
    means = [1000 * float(hub.get_scalar(key).data[0][-n:].mean()) for key in ("train/time", "train/data_time")]
    return means[0], means[1]


def report(name: str, path: str, cfg: Config, profile: Profile, per_epoch: int, wall: float) -> None:
    n = len(profile.iter_times)
    if n == 0:
        raise RuntimeError(f"{name}: no iteration was timed")
    ms = {key: 1000 * s / n for key, s in profile.seconds.items()}
    total = 1000 * sum(profile.iter_times) / n
    inner = sum(ms.get(k, 0.0) for k in ("teacher", "student", "router"))
    ms["loss"] = ms.get("model", 0.0) - inner
    ms["other"] = total - sum(ms.get(k, 0.0) for k, _ in ROWS if k not in SUB_ROWS and k != "other")
    times = sorted(profile.iter_times)
    model_type = cfg.model.get("type")
    print(f"\n{name}: {model_type} ({Path(path).name}), batch "
          f"{cfg.train_dataloader.batch_size}, {per_epoch} iterations/epoch, {n} timed iterations after "
          f"{profile.first_timed} untimed, {torch.get_num_threads()} threads"
          + (", CUDA (synchronised at every boundary)" if profile.sync else ", CPU"))
    print(f"{'component':<50} {'ms/iter':>9} {'%':>6} {'calls/iter':>10}")
    for key, label in ROWS:
        if key not in ms or (key in ("masks", "router") and not profile.calls.get(key)):
            continue
        calls = f"{profile.calls[key] / n:.1f}" if key in profile.calls and key != "model" else ""
        print(f"{label:<50} {ms[key]:>9.2f} {100 * ms[key] / total:>5.1f}% {calls:>10}")
    print(f"{'iteration (mean)':<50} {total:>9.2f} {100.0:>5.1f}%")
    rate = f"; {profile.samples / sum(profile.iter_times):.0f} samples/s" if profile.samples else ""
    print(f"iteration median {1000 * times[n // 2]:.2f} ms, p90 {1000 * times[min(n - 1, int(0.9 * n))]:.2f} ms"
          + rate)
    if profile.epoch_gaps:
        gap = 1000 * sum(profile.epoch_gaps) / len(profile.epoch_gaps)
        print(f"per epoch, outside the iterations: {gap:.1f} ms = {100 * gap / (gap + per_epoch * total):.1f}% "
              f"of an epoch's wall time, of which")
        epochs = len(profile.epoch_gaps)
        for part in EPOCH_PARTS:
            print(f"  {part:<48} {1000 * profile.epoch_parts.get(part, 0.0) / epochs:>9.1f} ms")
    if profile.before_train_s > 0.01:
        print(f"before training (hooks' before_train, e.g. the teacher cache build): {profile.before_train_s:.2f} s")
    if profile.mmengine:
        print(f"cross-check, mmengine's IterTimerHook over the same iterations: {profile.mmengine[0]:.2f} ms/iter, "
              f"data {profile.mmengine[1]:.2f} ms/iter")
    print(f"whole run (build excluded): {wall:.1f} s")
    if profile.top_ops:
        print(f"torch profiler: {profile.trace} ({profile.profile_iters} iterations); top operators by self CPU time:")
        print(profile.top_ops)


def main(argv=None) -> None:
    from mmengine.registry import init_default_scope

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    init_default_scope("xmodal")
    for name in args.recipes:
        run_recipe(name, args)


if __name__ == "__main__":
    from xmodal.apis.errors import cli_errors

    cli_errors(main)()
