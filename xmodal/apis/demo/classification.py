"""The classification demo (``--task classification``, the default): on digits-av, train the image+audio fusion
teacher, single-modality baselines and image-only students distilled by KD (one teacher, two
teachers) and MST-Distill, then compare them on the held-out test split, over one or several seeds.

Each row is an ordinary run of a config in ``configs/`` on mmengine's Runner (MST-Distill: its three
stages): the best epoch is chosen on the validation split, the reported numbers are from the test split.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.runner import Runner

from xmodal.apis.config import load_config, set_max_epochs
from xmodal.apis.demo.common import CONFIG_DIR, DemoRun, mean_and_std, needed, quiet, run_all, train_best_and_test
from xmodal.apis.stages import is_staged, run_stages, set_stage_epochs, test_config
from xmodal.engine.checkpoint import atomic_write_bytes, load_weights
from xmodal.engine.hooks import EpochHistoryHook, ProgressBarHook
from xmodal.engine.unwrap import unwrap

RUNS = [
    DemoRun("teacher_fusion", "digits_av/teacher_fusion.py", ["audio", "image"]),
    DemoRun("audio_only", "digits_av/student_audio.py", ["audio"]),
    DemoRun("student_no_kd", "digits_av/student_image.py", ["image"]),
    DemoRun("student_kd", "digits_av/kd_image_from_fusion.py", ["image"], {"t_fusion": "teacher_fusion"}),
    DemoRun("student_kd_multi", "digits_av/kd_image_multi.py", ["image"],
            {"t_fusion": "teacher_fusion", "t_audio": "audio_only"}),
    # MST-Distill trains its own teachers in its stage 1 (collaborative initialisation)
    DemoRun("student_mst_distill", "mst_distill/mst_digits_image.py", ["image"]),
]


def _run_config(run: DemoRun, out: Path, seed: int, epochs: int, work_dirs: dict[str, Path]) -> Config:
    cfg = load_config(CONFIG_DIR / run.config, work_dir=str(out / run.method))
    if is_staged(cfg):
        set_stage_epochs(cfg, epochs)
    else:
        set_max_epochs(cfg, epochs)
    quiet(cfg, seed)
    for name, method in run.teachers.items():  # the teachers are the runs trained earlier in this demo
        spec = cfg.model.teachers[name]
        spec.config = str(CONFIG_DIR / next(r.config for r in RUNS if r.method == method))
        spec.checkpoint = str(work_dirs[method])
    return cfg


def _row(run: DemoRun, metrics: dict, seconds: float, best: Path, history: list[dict], seed: int) -> dict:
    return {
        "method": run.method,
        "modalities": run.modalities,
        "seed": seed,
        "test_acc": float(metrics["accuracy"]),
        "test_f1": float(metrics["macro_f1"]),
        "test_kappa": float(metrics["kappa"]),
        "train_seconds": round(seconds, 2),
        "best_checkpoint": str(best),
        "history": history,
    }


def train_and_test(run: DemoRun, cfg: Config, progress, task_id, seed: int) -> dict:
    if is_staged(cfg):
        return _train_and_test_staged(run, cfg, progress, task_id, seed)
    done = train_best_and_test(cfg, progress, task_id)
    progress.update(task_id, status=f"test acc {done.metrics['accuracy']:.3f}")
    return _row(run, done.metrics, done.seconds, done.best, done.history, seed)


def _train_and_test_staged(run: DemoRun, cfg: Config, progress, task_id, seed: int) -> dict:
    histories: dict[int, EpochHistoryHook] = {}

    def hooks(stage: int) -> list:
        histories[stage] = EpochHistoryHook()
        progress.update(task_id, description=f"{run.method[:11]} s{stage}")
        return [histories[stage], ProgressBarHook(progress, task_id)]

    start = time.perf_counter()
    best = run_stages(cfg, hooks=hooks)
    seconds = time.perf_counter() - start
    tcfg = test_config(cfg)
    quiet(tcfg, seed)
    runner = Runner.from_cfg(tcfg)
    load_weights(unwrap(runner.model), best)
    metrics = runner.test()
    progress.update(task_id, description=run.method[:15], status=f"test acc {metrics['accuracy']:.3f}")
    return _row(run, metrics, seconds, best, histories[len(cfg.stages)].history, seed)


KEYS = ("test_acc", "test_f1", "test_kappa")


def aggregate(results: list[dict]) -> list[dict]:
    return mean_and_std(results, (*KEYS, "train_seconds"))


def plot_summary(results: list[dict], rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_val, ax_loss) = plt.subplots(1, 3, figsize=(16, 4.4))
    names = [r["method"] for r in rows]
    colors = {name: f"C{i}" for i, name in enumerate(names)}  # one colour per method in all three panels
    bars = ax_bar.bar(names, [r["test_acc_mean"] for r in rows], yerr=[r["test_acc_std"] for r in rows],
                      capsize=4, color=[colors[n] for n in names])
    ax_bar.bar_label(bars, fmt="%.3f", label_type="center", color="w")
    ax_bar.set_ylim(0, 1.05)
    ax_bar.set_ylabel("test accuracy" + (" (mean ± std over seeds)" if len(rows[0]["seeds"]) > 1 else ""))
    ax_bar.set_title("held-out test split")
    ax_bar.tick_params(axis="x", rotation=25)
    first_seed = results[0]["seed"]
    for r in (r for r in results if r["seed"] == first_seed):
        epochs = [h["epoch"] for h in r["history"]]
        color = colors[r["method"]]
        ax_val.plot(epochs, [h.get("accuracy") for h in r["history"]], marker=".", color=color, label=r["method"])
        ax_loss.plot(epochs, [h["train_loss"] for h in r["history"]], marker=".", color=color, label=r["method"])
    ax_val.set(xlabel="epoch", ylabel="validation accuracy", title=f"validation accuracy (seed {first_seed})")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="training loss (each method's own total)")
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(buffer.getvalue(), path)


def print_table(console, rows: list[dict]) -> None:
    from rich.table import Table

    several = len(rows[0]["seeds"]) > 1
    table = Table(title="digits-av: test split" + (f" ({len(rows[0]['seeds'])} seeds, mean ± std)" if several else ""))
    for col in ("method", "modality", "test acc", "macro-F1", "train time"):
        table.add_column(col, justify="left" if col in ("method", "modality") else "right")
    fmt = (lambda r, k: f"{r[k + '_mean']:.4f} ± {r[k + '_std']:.4f}") if several else (
        lambda r, k: f"{r[k + '_mean']:.4f}")
    for r in rows:
        table.add_row(r["method"], "+".join(r["modalities"]), fmt(r, "test_acc"), fmt(r, "test_f1"),
                      f"{r['train_seconds_mean']:.1f} s")
    console.print(table)


def run_demo(args: argparse.Namespace, console) -> dict:
    from xmodal.data.digits_av import build_digits_av

    runs = needed(args.methods, RUNS)  # a bad --methods fails before anything is written
    epochs = args.epochs or (4 if args.quick else 30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mmengine").setLevel(logging.ERROR)
    with console.status("digits-av: building the dataset (first run only; cached afterwards)..."):
        root = build_digits_av()
    console.print(f"digits-av at {root}")
    results = run_all(runs, args.seeds, out, console,
                      lambda run, seed_out, seed, dirs: _run_config(run, seed_out, seed, epochs, dirs), train_and_test)
    rows = aggregate(results)
    summary = {"dataset": "digits-av", "data_root": str(root), "seeds": args.seeds, "epochs": epochs,
               "quick": args.quick, "aggregate": rows, "results": results}
    atomic_write_bytes(json.dumps(summary, indent=1).encode(), out / "summary.json")
    plot_summary(results, rows, out / "summary.png")
    print_table(console, rows)
    console.print(f"wrote {out / 'summary.json'} and {out / 'summary.png'}")
    return summary

