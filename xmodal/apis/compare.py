"""``tools/compare.py CONFIG``: train one student with each distillation loss from the same teachers
and compare them on the test split (mean ± std over seeds), as a markdown and JSON table and a plot.

A comparison config names ``student_config`` (a Distiller config whose losses are replaced),
``teachers`` (``{teacher name in the Distiller: training config}``, trained once per seed),
``epochs`` and ``entries`` (``dict(name, losses, task_loss_weight=1.0, hooks=[], student={})``;
``student`` updates the student's model config, e.g. ``dict(type="DualHeadClassifier")``). An optional
``dataset`` dict updates the train, val and test datasets of every run, teachers included (e.g.
``dataset=dict(distractor_db=(-120.0, -120.0))`` for a digits-av variant).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mmengine.config import Config

import xmodal.engine  # noqa: F401  (atomic checkpoint writes, trusted loading)
from xmodal.apis.config import load_config, read_config, set_max_epochs
from xmodal.apis.demo.common import mean_and_std, quiet, save_figure, train_best_and_test
from xmodal.apis.errors import cli_errors
from xmodal.engine.checkpoint import atomic_write_bytes
from xmodal.engine.console import QuietRunner
from xmodal.errors import ConfigError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare distillation losses on one student.")
    parser.add_argument("config", help="comparison config, e.g. configs/compare/digits_av_losses.py")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ...); default 1")
    parser.add_argument("--epochs", type=int, help="override the config's epochs per model")
    parser.add_argument("--only", nargs="+", help="run only these entries")
    parser.add_argument("--out", help="output directory (default: work_dirs/compare/<config name>)")
    return parser.parse_args(argv)


def _check(spec: Config, path: str) -> list[dict]:
    for key in ("student_config", "teachers", "entries"):
        if key not in spec:
            raise KeyError(f"{path}: comparison config needs '{key}' (see configs/compare/digits_av_losses.py)")
    names = [e.get("name") for e in spec.entries]
    if None in names or len(set(names)) != len(names):
        raise ValueError(f"{path}: every entry needs a unique 'name'; got {names}")
    return list(spec.entries)


def entry_config(spec: Config, entry: dict, teacher_dirs: dict[str, Path], out: Path, seed: int,
                 epochs: int) -> Config:
    cfg = load_config(spec.student_config, work_dir=str(out / entry["name"]))
    set_max_epochs(cfg, epochs)
    prepare(cfg, seed)
    refs = [term["teacher"] for term in entry["losses"]]
    refs += [ref for term in entry["losses"] for ref in (term.get("inputs") or {}).values()]
    used = {ref.partition(".")[0] for ref in refs} & set(spec.teachers) or {next(iter(spec.teachers))}
    cfg.model.teachers = {name: dict(config=spec.teachers[name], checkpoint=str(teacher_dirs[name])) for name in used}
    cfg.model.losses = [{"weight": 1.0, **term} for term in entry["losses"]]
    cfg.model.task_loss_weight = entry.get("task_loss_weight", 1.0)
    cfg.model.student.update(entry.get("student", {}))
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), *entry.get("hooks", [])]
    apply_dataset(cfg, spec)
    return cfg


def apply_dataset(cfg: Config, spec: Config) -> None:
    """The comparison's ``dataset`` fields, on every split of one run."""
    fields = spec.get("dataset") or {}
    if not isinstance(fields, dict):
        raise ConfigError(f"dataset: expected dict(field=value, ...) for every run's datasets, got {fields!r}")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if fields and loader in cfg:
            cfg[loader].dataset.update(fields)


def modalities(cfg: Config) -> list[str]:
    """The modalities the trained model reads: a distiller's student's encoders, else the model's."""
    model = cfg.model
    student = model.get("student", model)
    return sorted((student.get("encoders") or {}).keys())


def prepare(cfg: Config, seed: int) -> None:
    """The demo's quiet settings, but with a full log file per run (the console stays quiet)."""
    quiet(cfg, seed)
    cfg.log_level = "INFO"
    cfg.default_hooks.logger.interval = 10


def train_and_test(method: str, role: str, cfg: Config, progress, task_id, seed: int) -> dict:
    """Train ``cfg`` with a progress bar, test its best (validation-chosen) checkpoint: one result row."""
    done = train_best_and_test(cfg, progress, task_id, runner_class=QuietRunner)
    runner, metrics, seconds, best, history = done.runner, done.metrics, done.seconds, done.best, done.history
    progress.update(task_id, status=f"test acc {metrics['accuracy']:.3f}")
    return {"method": method, "role": role, "modalities": modalities(cfg), "seed": seed,
            "test_acc": float(metrics["accuracy"]), "test_f1": float(metrics["macro_f1"]),
            "test_kappa": float(metrics["kappa"]), "train_seconds": round(seconds, 2), "best_checkpoint": str(best),
            "log": str(Path(runner.log_dir) / f"{runner.timestamp}.log"), "history": history}


def summarise(results: list[dict], epochs: int) -> list[dict]:
    """Mean ± std per method (teachers first), with each seed's values and the train time per epoch."""
    rows = mean_and_std(results, ("test_acc", "test_f1", "test_kappa", "train_seconds"))
    for row in rows:
        runs = [r for r in results if r["method"] == row["method"]]
        row["role"] = runs[0]["role"]
        row["epoch_seconds_mean"] = sum(r["train_seconds"] for r in runs) / len(runs) / epochs
        for key in ("test_acc", "test_f1"):
            row[f"{key}_per_seed"] = [r[key] for r in runs]
    return sorted(rows, key=lambda r: r["role"] != "teacher")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| method | role | modality | test acc | macro-F1 | test acc per seed | train time / epoch |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        seeds = ", ".join(f"{v:.4f}" for v in r["test_acc_per_seed"])
        lines.append(f"| {r['method']} | {r['role']} | {'+'.join(r['modalities'])} | "
                     f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} | {r['test_f1_mean']:.4f} ± "
                     f"{r['test_f1_std']:.4f} | {seeds} | {r['epoch_seconds_mean']:.2f} s |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], rows: list[dict], path: Path) -> None:
    """Test accuracy per method (mean ± std) and the first seed's validation accuracy and training loss
    per epoch, on integer epoch ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_bar, ax_val, ax_loss) = plt.subplots(1, 3, figsize=(16, 4.4))
    names = [r["method"] for r in rows]
    colors = {name: f"C{i}" for i, name in enumerate(names)}
    bars = ax_bar.bar(names, [r["test_acc_mean"] for r in rows], yerr=[r["test_acc_std"] for r in rows], capsize=4,
                      color=[colors[n] for n in names])
    for bar, row in zip(bars, rows):
        if row["role"] == "teacher":
            bar.set_hatch("//")
    ax_bar.bar_label(bars, fmt="%.3f", label_type="center", color="w")
    ax_bar.set(ylim=(0, 1.05), ylabel="test accuracy", title="held-out test split (hatched: teachers)")
    ax_bar.tick_params(axis="x", rotation=25)
    first_seed = results[0]["seed"]
    for r in (r for r in results if r["seed"] == first_seed):
        epochs = [h["epoch"] for h in r["history"]]
        ax_val.plot(epochs, [h.get("accuracy") for h in r["history"]], marker=".", color=colors[r["method"]],
                    label=r["method"])
        ax_loss.plot(epochs, [h["train_loss"] for h in r["history"]], marker=".", color=colors[r["method"]])
    for ax in (ax_val, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_val.set(xlabel="epoch", ylabel="validation accuracy", title=f"validation accuracy (seed {first_seed})")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="training loss (each method's own total)")
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


@cli_errors
def main(argv: list[str] | None = None) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    args = parse_args(argv)
    for option in ("seeds", "epochs"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option} {value}: expected a positive integer")
    spec = read_config(args.config)
    entries = _check(spec, args.config)
    if args.only:
        unknown = set(args.only) - {e["name"] for e in entries}
        if unknown:
            raise ConfigError(f"--only: no entries {sorted(unknown)} in {args.config}; it has "
                              f"{[e['name'] for e in entries]}")
        entries = [e for e in entries if e["name"] in args.only]
    epochs = args.epochs or spec.get("epochs", 30)
    out = Path(args.out or Path("work_dirs/compare") / Path(args.config).stem)
    console = Console()
    logging.getLogger("mmengine").setLevel(logging.ERROR)
    columns = [TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    results = []
    for seed in range(args.seeds):
        seed_out = out / f"seed{seed}"
        with Progress(*columns, console=console) as progress:
            teacher_dirs = {}
            for name, config in spec.teachers.items():
                cfg = load_config(config, work_dir=str(seed_out / f"teacher_{name}"))
                set_max_epochs(cfg, epochs)
                prepare(cfg, seed)
                apply_dataset(cfg, spec)
                task = progress.add_task(f"teacher {name}"[:18], total=None, status="")
                results.append(train_and_test(f"teacher_{name}", "teacher", cfg, progress, task, seed))
                teacher_dirs[name] = Path(cfg.work_dir)
            for entry in entries:
                cfg = entry_config(spec, entry, teacher_dirs, seed_out, seed, epochs)
                task = progress.add_task(entry["name"][:18], total=None, status="")
                results.append(train_and_test(entry["name"], "student", cfg, progress, task, seed))
    for row in results:
        row["epoch_seconds"] = row["train_seconds"] / epochs
    rows = summarise(results, epochs)
    summary = {"config": args.config, "seeds": list(range(args.seeds)), "epochs": epochs, "aggregate": rows,
               "results": results}
    atomic_write_bytes(json.dumps(summary, indent=1).encode(), out / "compare.json")
    atomic_write_bytes(markdown_table(rows).encode(), out / "compare.md")
    plot(results, rows, out / "compare.png")
    console.print(markdown_table(rows))
    console.print(f"wrote {out / 'compare.md'}, compare.json and compare.png")
    return summary


if __name__ == "__main__":
    main()
