"""The demo: on digits-av, train the image+audio fusion teacher, single-modality baselines and the
image-only student distilled from the teacher, then compare them on the held-out test split.

Each row is an ordinary run of a config in ``configs/digits_av/`` on mmengine's Runner: the best
epoch is chosen on the validation split, and the reported numbers are from the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.runner import Runner

import xmodal.engine  # noqa: F401  (atomic checkpoint writes, trusted loading)
from xmodal.apis.config import load_config, set_max_epochs
from xmodal.engine.checkpoint import atomic_write_bytes, load_weights, resolve_checkpoint
from xmodal.engine.hooks import EpochHistoryHook, ProgressBarHook, unwrap

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "digits_av"


@dataclasses.dataclass
class DemoRun:
    method: str
    config: str
    modalities: list[str]
    teacher: str | None = None  # the method whose best checkpoint is this run's teacher


RUNS = [
    DemoRun("teacher_fusion", "teacher_fusion.py", ["audio", "image"]),
    DemoRun("audio_only", "student_audio.py", ["audio"]),
    DemoRun("student_no_kd", "student_image.py", ["image"]),
    DemoRun("student_kd", "kd_image_from_fusion.py", ["image"], teacher="teacher_fusion"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Multimodal teacher -> image-only student on digits-av.")
    parser.add_argument("--quick", action="store_true", help="a few epochs per model: a smoke run (< 60 s)")
    parser.add_argument("--out", default="work_dirs/demo", help="output directory (default: work_dirs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the dataset itself is fixed)")
    parser.add_argument("--epochs", type=int, help="epochs per model (default: 30, or 4 with --quick)")
    return parser.parse_args(argv)


def _run_config(run: DemoRun, out: Path, seed: int, epochs: int, work_dirs: dict[str, Path]) -> Config:
    cfg = load_config(CONFIG_DIR / run.config, work_dir=str(out / run.method))
    set_max_epochs(cfg, epochs)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.log_level = "ERROR"
    cfg.visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
    cfg.default_hooks.logger.interval = 10**6
    if run.teacher is not None:  # the recipe's one teacher is the run trained earlier in this demo
        (spec,) = cfg.model.teachers.values()
        spec.config = str(CONFIG_DIR / next(r.config for r in RUNS if r.method == run.teacher))
        spec.checkpoint = str(work_dirs[run.teacher])
    return cfg


def train_and_test(run: DemoRun, cfg: Config, progress, task_id) -> dict:
    history = EpochHistoryHook()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(history)
    runner.register_hook(ProgressBarHook(progress, task_id))
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    best = resolve_checkpoint(cfg.work_dir)
    load_weights(unwrap(runner.model), best)
    metrics = runner.test()
    progress.update(task_id, status=f"test acc {metrics['accuracy']:.3f}")
    return {
        "method": run.method,
        "modalities": run.modalities,
        "test_acc": float(metrics["accuracy"]),
        "test_f1": float(metrics["macro_f1"]),
        "test_kappa": float(metrics["kappa"]),
        "train_seconds": round(seconds, 2),
        "best_checkpoint": str(best),
        "history": history.history,
    }


def plot_summary(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_val, ax_loss) = plt.subplots(1, 3, figsize=(15, 4.2))
    names = [r["method"] for r in results]
    accs = [r["test_acc"] for r in results]
    colors = [f"C{i}" for i in range(len(results))]  # one colour per method in all three panels
    bars = ax_bar.bar(names, accs, color=colors)
    ax_bar.bar_label(bars, fmt="%.3f")
    ax_bar.set_ylim(0, 1.05)
    ax_bar.set_ylabel("test accuracy")
    ax_bar.set_title("held-out test split")
    ax_bar.tick_params(axis="x", rotation=20)
    for r, color in zip(results, colors):
        epochs = [h["epoch"] for h in r["history"]]
        ax_val.plot(epochs, [h.get("accuracy") for h in r["history"]], marker=".", color=color, label=r["method"])
        ax_loss.plot(epochs, [h["train_loss"] for h in r["history"]], marker=".", color=color, label=r["method"])
    ax_val.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="training loss (KD row: CE + KD)")
    ax_val.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(console, results: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="digits-av: test split")
    for col in ("method", "modality", "test acc", "macro-F1", "train time"):
        table.add_column(col, justify="left" if col in ("method", "modality") else "right")
    for r in results:
        table.add_row(r["method"], "+".join(r["modalities"]), f"{r['test_acc']:.4f}", f"{r['test_f1']:.4f}",
                      f"{r['train_seconds']:.1f} s")
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from xmodal.data.digits_av import build_digits_av

    args = parse_args(argv)
    epochs = args.epochs or (4 if args.quick else 30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    logging.getLogger("mmengine").setLevel(logging.ERROR)
    with console.status("digits-av: building the dataset (first run only; cached afterwards)..."):
        root = build_digits_av()
    console.print(f"digits-av at {root}")
    results, work_dirs = [], {}
    columns = [TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=console) as progress:
        tasks = {r.method: progress.add_task(r.method, total=None, start=False, status="waiting") for r in RUNS}
        for run in RUNS:
            cfg = _run_config(run, out, args.seed, epochs, work_dirs)
            progress.start_task(tasks[run.method])
            results.append(train_and_test(run, cfg, progress, tasks[run.method]))
            work_dirs[run.method] = Path(cfg.work_dir)
    summary = {"dataset": "digits-av", "data_root": str(root), "seed": args.seed, "epochs": epochs,
               "quick": args.quick, "results": results}
    atomic_write_bytes(json.dumps(summary, indent=1).encode(), out / "summary.json")
    plot_summary(results, out / "summary.png")
    print_table(console, results)
    console.print(f"wrote {out / 'summary.json'} and {out / 'summary.png'}")
    return summary


if __name__ == "__main__":
    main()
