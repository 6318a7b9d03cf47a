"""The classification demo (``--task classification``, the default) on digits-av: image-only students taught by
an image+audio fusion teacher and an audio-only (cross-modal) teacher, compared on the held-out test split.

**Label-scarce regime (default).** Cross-modal distillation pays where the student's modality has few labels
but many samples paired with the teacher's modality. digits-av's training split is cut into two disjoint,
class-stratified halves (``subset=dict(part, of=2)``):

- the teachers (``teacher_fusion``, ``audio_only``) learn from every label of the first half;
- the image students learn on the second half, where only ``--labelled`` (default 10 %) of the samples keep
  their labels (``labelled=dict(fraction, seed)``); every other sample is an unlabelled image+audio pair
  that only a teacher can supervise. ``no_kd`` trains on the labelled samples alone; the distilled students
  see batches of 16 labelled + 48 unlabelled samples (``LabelledRatioBatchSampler``); ``no_kd_long`` is the
  equal-compute control: ``no_kd`` given as many optimizer steps as the longest student.

``--teacher-labels same`` trains the teachers on the students' labelled samples only (the hardest case);
``--full-labels`` runs the earlier table (every model on the whole training split with every label).
Each row is an ordinary run of a config in ``configs/`` on mmengine's Runner (MST-Distill: its three stages);
the best epoch is chosen on the validation split (never budgeted), the numbers are from the test split.
See docs/label_scarce.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from xmodal.apis.config import load_config, set_max_epochs
from xmodal.apis.demo.common import (
    CONFIG_DIR,
    DemoRun,
    mean_and_std,
    needed,
    paired_gain,
    quiet,
    save_figure,
    train_best_and_test,
)
from xmodal.apis.stages import is_staged, run_stages, set_stage_epochs, test_config
from xmodal.engine.checkpoint import atomic_write_bytes, load_weights
from xmodal.engine.hooks import EpochHistoryHook, ProgressBarHook
from xmodal.engine.unwrap import unwrap

TEACHERS = {"t_fusion": "teacher_fusion", "t_audio": "audio_only"}
RUNS = [
    DemoRun("teacher_fusion", "digits_av/teacher_fusion.py", ["audio", "image"]),
    DemoRun("audio_only", "digits_av/student_audio.py", ["audio"]),
    DemoRun("student_no_kd", "digits_av/student_image.py", ["image"]),
    DemoRun("student_kd", "digits_av/kd_image_from_fusion.py", ["image"], {"t_fusion": "teacher_fusion"}),
    DemoRun("student_kd_multi", "digits_av/kd_image_multi.py", ["image"], dict(TEACHERS)),
    # label-scarce: stage 1 starts from the demo's teachers; full labels: MST trains its own from scratch
    DemoRun("student_mst_distill", "mst_distill/mst_digits_image.py", ["image"], dict(TEACHERS)),
    DemoRun("student_dho", "digits_av/dho_image_from_fusion.py", ["image"], {"t_fusion": "teacher_fusion"}),
    # the equal-compute control: as many optimizer steps as the longest student of its seed and budget
    DemoRun("student_no_kd_long", "digits_av/student_image.py", ["image"]),
]
TEACHER_RUNS = ("teacher_fusion", "audio_only")
BATCH, LABELLED_PER_BATCH = 64, 16  # distilled students' batches; no_kd takes the labelled 16 alone


def _is_teacher(run: DemoRun) -> bool:
    return run.method in TEACHER_RUNS


def _budget(cfg: Config, part: int, fraction: float | None, seed: int, batch: int, labelled_per_batch: int) -> None:
    """Train on half ``part`` of the split; with ``fraction``, only that share keeps its labels."""
    loader = cfg.train_dataloader
    loader.dataset.subset = dict(part=part, of=2, seed=0)  # the halves are fixed; the label draw follows the seed
    if fraction is not None:
        loader.dataset.labelled = dict(fraction=fraction, seed=seed)
        loader.batch_sampler = dict(type="LabelledRatioBatchSampler", labelled_per_batch=labelled_per_batch)
    loader.batch_size = batch


def run_config(run: DemoRun, out: Path, seed: int, epochs: int, work_dirs: dict[str, Path],
               fraction: float | None = None, teacher_labels: str = "disjoint", steps: int | None = None) -> Config:
    """The config of one row. ``fraction`` None: the full-label regime (whole split, every label)."""
    cfg = load_config(CONFIG_DIR / run.config, work_dir=str(out / run.method))
    if is_staged(cfg):
        set_stage_epochs(cfg, epochs)
    else:
        set_max_epochs(cfg, epochs)
    quiet(cfg, seed)
    staged = is_staged(cfg)
    if staged and fraction is None:
        return cfg  # full labels: MST-Distill's stage 1 trains its own teachers, as the recipe does
    for name, method in run.teachers.items():  # the teachers are the runs trained earlier in this demo
        spec = (cfg.stages[0].model if staged else cfg.model).teachers[name]
        if not staged:
            spec.config = str(CONFIG_DIR / next(r.config for r in RUNS if r.method == method))
        spec.checkpoint = str(work_dirs[method])
    if not staged and cfg.model.get("type") == "Distiller":
        cfg.model.teacher_cache = dict()  # frozen teachers, fixed inputs: their outputs are computed once
    if staged:  # two choices beyond the paper, both measured in docs/kd_efficacy.md
        cfg.stages[0].model.train_teachers = False  # mutual learning on 10 % labels weakens the teachers
        cfg.stages[2].model.kd_mode = "mixture"  # the official repo's gate-weighted variant; better on validation
    if fraction is None:
        return cfg
    if _is_teacher(run):
        if teacher_labels == "disjoint":
            _budget(cfg, 0, None, seed, BATCH, LABELLED_PER_BATCH)
        else:  # the hardest case: the teachers know only the students' labelled samples
            _budget(cfg, 1, fraction, seed, LABELLED_PER_BATCH, LABELLED_PER_BATCH)
    elif run.teachers:
        _budget(cfg, 1, fraction, seed, BATCH, LABELLED_PER_BATCH)
    else:  # no teacher: the labelled samples alone
        _budget(cfg, 1, fraction, seed, LABELLED_PER_BATCH, LABELLED_PER_BATCH)
        if steps is not None:
            per_epoch = max(1, math.ceil(_labelled_count(cfg) / LABELLED_PER_BATCH))
            set_max_epochs(cfg, max(epochs, math.ceil(steps / per_epoch)))
    return cfg


def _labelled_count(cfg: Config) -> int:
    from xmodal.registry import DATASETS

    return DATASETS.build(cfg.train_dataloader.dataset).num_labelled


class _StepCounter(Hook):
    def __init__(self) -> None:
        self.steps = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.steps += 1


def _row(run: DemoRun, metrics: dict, seconds: float, steps: int, best: Path, history: list[dict], seed: int,
         fraction: float | None) -> dict:
    return {
        "method": run.method,
        "modalities": run.modalities,
        "seed": seed,
        "labelled": fraction,
        "test_acc": float(metrics["accuracy"]),
        "test_f1": float(metrics["macro_f1"]),
        "test_kappa": float(metrics["kappa"]),
        "train_seconds": round(seconds, 2),
        "train_steps": steps,
        "best_checkpoint": str(best),
        "history": history,
    }


def train_and_test(run: DemoRun, cfg: Config, progress, task_id, seed: int, fraction: float | None = None) -> dict:
    counter = _StepCounter()
    if is_staged(cfg):
        return _train_and_test_staged(run, cfg, progress, task_id, seed, fraction, counter)
    done = train_best_and_test(cfg, progress, task_id, extra_hooks=[counter])
    progress.update(task_id, status=f"test acc {done.metrics['accuracy']:.3f}")
    return _row(run, done.metrics, done.seconds, counter.steps, done.best, done.history, seed, fraction)


def _train_and_test_staged(run: DemoRun, cfg: Config, progress, task_id, seed: int, fraction: float | None,
                           counter: _StepCounter) -> dict:
    histories: dict[int, EpochHistoryHook] = {}

    def hooks(stage: int) -> list:
        histories[stage] = EpochHistoryHook()
        progress.update(task_id, description=f"{run.method[:11]} s{stage}")
        return [histories[stage], ProgressBarHook(progress, task_id), counter]

    start = time.perf_counter()
    best = run_stages(cfg, hooks=hooks)
    seconds = time.perf_counter() - start
    tcfg = test_config(cfg)
    quiet(tcfg, seed)
    runner = Runner.from_cfg(tcfg)
    load_weights(unwrap(runner.model), best)
    metrics = runner.test()
    progress.update(task_id, description=run.method[:15], status=f"test acc {metrics['accuracy']:.3f}")
    return _row(run, metrics, seconds, counter.steps, best, histories[len(cfg.stages)].history, seed, fraction)


KEYS = ("test_acc", "test_f1", "test_kappa")
BASELINE = "student_no_kd"


def aggregate(results: list[dict]) -> list[dict]:
    """Mean ± std per method and label budget, and each student's gain over ``no_kd`` (same seed and budget)
    with a 95 % interval over seeds."""
    rows = mean_and_std(results, (*KEYS, "train_seconds", "train_steps"), group=("method", "labelled"))
    gains = paired_gain(results, "test_acc", BASELINE, group=("labelled",))
    for row in rows:
        if row["method"] not in TEACHER_RUNS:  # a teacher is not a student of this budget
            row.update(gains.get((row["method"], row["labelled"]), {}))
    return rows


def _fmt_budget(fraction: float | None) -> str:
    return "all" if fraction is None else f"{fraction:.0%}"


def plot_summary(results: list[dict], rows: list[dict], path: Path) -> None:
    """Test accuracy per method: against the label fraction when several were run, else as bars; and the
    validation curves of the first seed's smallest budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_val) = plt.subplots(1, 2, figsize=(13, 4.6))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = {name: f"C{i}" for i, name in enumerate(methods)}
    several = len(rows[0]["seeds"]) > 1
    fractions = sorted({r["labelled"] for r in rows if r["labelled"] is not None})
    if len(fractions) > 1:
        for method in methods:
            pts = sorted((r["labelled"], r["test_acc_mean"], r["test_acc_std"]) for r in rows
                         if r["method"] == method and r["labelled"] is not None)
            if pts:
                x, y, err = zip(*pts)
                ax_acc.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colors[method], label=method)
        ax_acc.set_xscale("log")
        ax_acc.set_xticks(fractions, [_fmt_budget(f) for f in fractions])
        ax_acc.set(xlabel="student's labelled fraction (of its half)", ylim=(0, 1.02))
        ax_acc.legend(fontsize=8)
    else:
        names = [r["method"] for r in rows]
        bars = ax_acc.bar(names, [r["test_acc_mean"] for r in rows], yerr=[r["test_acc_std"] for r in rows],
                          capsize=4, color=[colors[n] for n in names])
        ax_acc.bar_label(bars, fmt="%.3f", label_type="center", color="w")
        ax_acc.set_ylim(0, 1.05)
        ax_acc.tick_params(axis="x", rotation=25)
    ax_acc.set_ylabel("test accuracy" + (" (mean ± std over seeds)" if several else ""))
    ax_acc.set_title("held-out test split")
    seed = results[0]["seed"]
    budget = min(fractions) if fractions else None
    for r in (r for r in results if r["seed"] == seed and r.get("labelled") == budget):
        epochs = [h["epoch"] for h in r["history"]]
        ax_val.plot(epochs, [h.get("accuracy") for h in r["history"]], marker=".", color=colors[r["method"]],
                    label=r["method"])
    ax_val.set(xlabel="epoch", ylabel="validation accuracy",
               title=f"validation accuracy (seed {seed}, labels: {_fmt_budget(budget)})")
    ax_val.xaxis.get_major_locator().set_params(integer=True)
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def print_table(console, rows: list[dict], title: str) -> None:
    """Compact enough for an 80-column terminal; summary.json keeps every digit, macro-F1, kappa and the
    modalities."""
    from rich.table import Table

    n = len(rows[0]["seeds"])
    table = Table(title=title + (f" ({n} seeds: mean±std; gain: mean±95 % interval)" if n > 1 else ""))
    for col in ("method", "labels", "test acc", "gain (pt)", "steps", "time"):
        # the method name is what a reader looks for: never cut it
        table.add_column(col, justify="left" if col in ("method", "labels") else "right", no_wrap=col == "method")
    def fmt(r: dict, k: str) -> str:
        return f"{r[k + '_mean']:.3f}±{r[k + '_std']:.3f}" if n > 1 else f"{r[k + '_mean']:.3f}"

    for r in rows:
        gain = ""
        if "gain_mean" in r:
            gain = f"{100 * r['gain_mean']:+.1f}"
            if r["gain_ci95"] is not None:
                gain += f"±{100 * r['gain_ci95']:.1f}"
        labels = "teacher" if r["method"] in TEACHER_RUNS else _fmt_budget(r["labelled"])
        table.add_row(r["method"], labels, fmt(r, "test_acc"), gain, f"{r['train_steps_mean']:.0f}",
                      f"{r['train_seconds_mean']:.0f} s")
    console.print(table)


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), console=console)


def _run_seed(runs: list[DemoRun], seed: int, out: Path, console, epochs: int, fractions: list[float | None],
              teacher_labels: str) -> list[dict]:
    """One seed: the teachers (once, or once per budget when they share the students' labels), then every
    student per budget, the equal-compute control last."""
    results = []
    shared_teachers = fractions == [None] or teacher_labels == "disjoint"
    work_dirs: dict[str, Path] = {}
    with _progress(console) as progress:
        def train(run: DemoRun, fraction: float | None, where: Path, steps: int | None = None) -> dict:
            label = "" if fraction is None or (_is_teacher(run) and shared_teachers) else _fmt_budget(fraction)
            task = progress.add_task(f"{run.method[:14]} {label}", total=None, status="")
            cfg = run_config(run, where, seed, epochs, work_dirs, fraction, teacher_labels, steps)
            row = train_and_test(run, cfg, progress, task, seed, fraction)
            work_dirs[run.method] = Path(cfg.work_dir)
            return row

        if shared_teachers:
            for run in (r for r in runs if _is_teacher(r)):
                results.append({**train(run, fractions[0], out / "teachers"), "labelled": None})
        for fraction in fractions:
            where = out / (f"labelled_{fraction:g}" if fraction is not None else "full")
            if not shared_teachers:
                results += [train(run, fraction, where) for run in runs if _is_teacher(run)]
            students = [r for r in runs if not _is_teacher(r) and r.method != "student_no_kd_long"]
            done = [train(run, fraction, where) for run in students]
            results += done
            if any(r.method == "student_no_kd_long" for r in runs):
                longest = max((r["train_steps"] for r in done), default=0)
                control = next(r for r in runs if r.method == "student_no_kd_long")
                results.append(train(control, fraction, where, steps=longest))
    return results


def run_demo(args: argparse.Namespace, console) -> dict:
    from xmodal.data.digits_av import build_digits_av

    methods = args.methods
    if methods and any(m not in TEACHER_RUNS for m in methods):
        methods = [*methods, BASELINE]  # every student row is shown against no_kd
    runs = needed(methods, RUNS)  # a bad --methods fails before anything is written
    if args.full_labels:
        fractions: list[float | None] = [None]
        runs = [r for r in runs if r.method not in ("student_dho", "student_no_kd_long")]  # the earlier table
    else:
        fractions = sorted(set(args.labelled))
        bad = [f for f in fractions if not 0 < f <= 1]
        if bad:
            raise ValueError(f"--labelled: fractions must lie in (0, 1], got {bad}")
    epochs = args.epochs or (4 if args.quick else 30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mmengine").setLevel(logging.ERROR)
    with console.status("digits-av: building the dataset (first run only; cached afterwards)..."):
        root = build_digits_av()
    console.print(f"digits-av at {root}")
    results = []
    for seed in args.seeds:
        seed_out = out / f"seed{seed}" if len(args.seeds) > 1 else out
        results += _run_seed(runs, seed, seed_out, console, epochs, fractions, args.teacher_labels)
    rows = aggregate(results)
    regime = "full labels" if args.full_labels else (
        f"label-scarce, teachers on {'the other half' if args.teacher_labels == 'disjoint' else 'the same labels'}")
    summary = {"dataset": "digits-av", "data_root": str(root), "regime": regime, "seeds": args.seeds,
               "epochs": epochs, "labelled": fractions, "teacher_labels": args.teacher_labels, "quick": args.quick,
               "aggregate": rows, "results": results}
    atomic_write_bytes(json.dumps(summary, indent=1).encode(), out / "summary.json")
    plot_summary(results, rows, out / "summary.png")
    print_table(console, rows, f"digits-av, {regime}: test split")
    console.print(f"wrote {out / 'summary.json'} and {out / 'summary.png'}")
    return summary
