"""What the demo suites share: a run description, quiet configs, the teacher runs a method needs, training
one config to its best checkpoint, the seed loop with progress bars, and mean ± std over seeds."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

import xmodal.engine  # noqa: F401  (atomic checkpoint writes, trusted loading)
from xmodal.apis.runner import add_default_hooks
from xmodal.engine.checkpoint import load_weights, resolve_checkpoint
from xmodal.engine.hooks import EpochHistoryHook, ProgressBarHook
from xmodal.engine.unwrap import unwrap

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"


@dataclasses.dataclass
class DemoRun:
    method: str
    config: str  # relative to configs/
    modalities: list[str]
    teachers: dict[str, str] = dataclasses.field(default_factory=dict)  # config teacher name -> demo method


def quiet(cfg: Config, seed: int) -> None:
    """Seed ``cfg`` and silence its logging, so the progress bars are the only output."""
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.log_level = "ERROR"
    cfg.visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
    cfg.default_hooks.logger.interval = 10**6


@dataclasses.dataclass
class TrainedRun:
    runner: Runner
    metrics: dict
    seconds: float
    best: Path
    history: list[dict]


def train_best_and_test(cfg: Config, progress, task_id, extra_hooks: list | None = None,
                        runner_class: type[Runner] = Runner) -> TrainedRun:
    """Train one config with a progress bar, load its best (validation-chosen) checkpoint, test it."""
    history = EpochHistoryHook()
    runner = runner_class.from_cfg(cfg)
    add_default_hooks(runner, cfg)
    runner.register_hook(history)
    for hook in extra_hooks or []:
        runner.register_hook(hook)
    runner.register_hook(ProgressBarHook(progress, task_id))
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    best = resolve_checkpoint(cfg.work_dir)
    load_weights(unwrap(runner.model), best)
    return TrainedRun(runner, runner.test(), seconds, best, history.history)


def needed(methods: list[str] | None, runs: list[DemoRun]) -> list[DemoRun]:
    """The runs of ``--methods`` and the teacher runs they need, in ``runs`` order; all runs when none given."""
    if not methods:
        return runs
    unknown = set(methods) - {r.method for r in runs}
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {sorted(unknown)} for this task; choose from "
                         f"{[r.method for r in runs]}")
    wanted = set(methods)
    for run in runs:
        if run.method in wanted:
            wanted |= set(run.teachers.values())
    return [r for r in runs if r.method in wanted]


def run_all(runs: list[DemoRun], seeds: list[int], out: Path, console, make_config: Callable,
            train: Callable) -> list[dict]:
    """Each seed, each run in order with a progress bar: ``make_config(run, seed_out, seed, work_dirs)``
    (``work_dirs``: the runs already trained for this seed, for teachers), then ``train(run, cfg, progress,
    task_id, seed)`` -> a result row."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    results = []
    for seed in seeds:
        work_dirs: dict[str, Path] = {}
        seed_out = out / f"seed{seed}" if len(seeds) > 1 else out
        with Progress(*columns, console=console) as progress:
            tasks = {r.method: progress.add_task(r.method[:15], total=None, start=False, status="waiting")
                     for r in runs}
            for run in runs:
                cfg = make_config(run, seed_out, seed, work_dirs)
                progress.start_task(tasks[run.method])
                results.append(train(run, cfg, progress, tasks[run.method], seed))
                work_dirs[run.method] = Path(cfg.work_dir)
    return results


def mean_and_std(results: list[dict], keys: tuple[str, ...], group: tuple[str, ...] = ("method",)) -> list[dict]:
    """Mean and sample standard deviation of ``keys`` over seeds, per ``group`` (the method, and e.g. its
    label budget), in run order."""
    rows = []
    for ident in dict.fromkeys(tuple(r.get(g) for g in group) for r in results):
        runs = [r for r in results if tuple(r.get(g) for g in group) == ident]
        row = {**dict(zip(group, ident)), "modalities": runs[0].get("modalities", []),
               "seeds": [r["seed"] for r in runs]}
        for key in keys:
            values = np.array([r[key] for r in runs], dtype=float)
            row[f"{key}_mean"] = float(values.mean())
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def paired_gain(results: list[dict], key: str, baseline: str, group: tuple[str, ...] = ()) -> dict[tuple, dict]:
    """Per (method, *group): the mean of ``key`` minus the baseline method's ``key`` of the same seed (and
    group), with a two-sided 95 % t-interval over seeds (``None`` with one seed)."""
    from scipy import stats

    base = {(r["seed"], *(r.get(g) for g in group)): r[key] for r in results if r["method"] == baseline}
    gains: dict[tuple, list[float]] = {}
    for r in results:
        paired = base.get((r["seed"], *(r.get(g) for g in group)))
        if r["method"] != baseline and paired is not None:
            gains.setdefault((r["method"], *(r.get(g) for g in group)), []).append(r[key] - paired)
    out = {}
    for ident, values in gains.items():
        values = np.asarray(values, dtype=float)
        half = None
        if len(values) > 1:
            half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
        out[ident] = {"gain_mean": float(values.mean()), "gain_ci95": half, "n": len(values)}
    return out


@dataclasses.dataclass
class SuiteRun:
    dataset: str
    out: Path
    data_root: Path
    epochs: int
    results: list[dict]

    def write_summary(self, args, rows: list[dict]) -> dict:
        """``summary.json`` in the output directory: the settings, the aggregated rows and every run."""
        from xmodal.engine.checkpoint import atomic_write_bytes

        summary = {"dataset": self.dataset, "data_root": str(self.data_root), "seeds": args.seeds,
                   "epochs": self.epochs, "quick": args.quick, "aggregate": rows, "results": self.results}
        atomic_write_bytes(json.dumps(summary, indent=1).encode(), self.out / "summary.json")
        return summary


def run_suite(args, console, runs: list[DemoRun], dataset: str, build: Callable[[], Path], default_out: str,
              epochs: tuple[int, int], make_config: Callable, train: Callable) -> SuiteRun:
    """What a one-regime suite does: pick the rows (``--methods``), build its embedded data set, train every
    row for every seed. ``epochs``: (full, ``--quick``) defaults."""
    runs = needed(args.methods, runs)  # a bad --methods fails before anything is written
    n_epochs = args.epochs or (epochs[1] if args.quick else epochs[0])
    out = Path(args.out if args.out != "work_dirs/demo" else default_out)
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mmengine").setLevel(logging.ERROR)
    with console.status(f"{dataset}: rendering the dataset (first run only; cached afterwards)..."):
        root = build()
    console.print(f"{dataset} at {root}")
    results = run_all(runs, args.seeds, out, console,
                      lambda run, seed_out, seed, dirs: make_config(run, seed_out, seed, n_epochs, dirs), train)
    return SuiteRun(dataset, out, root, n_epochs, results)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically (a killed run leaves no half-written picture) and close it."""
    import io

    import matplotlib.pyplot as plt

    from xmodal.engine.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(buffer.getvalue(), path)
