"""``tools/compare.py CONFIG``: train one student with each distillation loss from the same teachers
and compare them on the test split (mean ± std over seeds), as a markdown and JSON table and a plot.

A comparison config names ``student_config`` (a Distiller config whose losses are replaced),
``teachers`` (``{teacher name in the Distiller: training config}``, trained once per seed),
``epochs`` and ``entries`` (``dict(name, losses, task_loss_weight=1.0, hooks=[], student={})``;
``student`` updates the student's model config, e.g. ``dict(type="DualHeadClassifier")``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mmengine.config import Config

import xmodal.engine  # noqa: F401  (atomic checkpoint writes, trusted loading)
from xmodal.apis.config import load_config, read_config, set_max_epochs
from xmodal.apis.demo.classification import aggregate, plot_summary, train_and_test
from xmodal.apis.demo.common import DemoRun, quiet
from xmodal.apis.errors import cli_errors
from xmodal.engine.checkpoint import atomic_write_bytes
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
    quiet(cfg, seed)
    refs = [term["teacher"] for term in entry["losses"]]
    refs += [ref for term in entry["losses"] for ref in (term.get("inputs") or {}).values()]
    used = {ref.partition(".")[0] for ref in refs} & set(spec.teachers) or {next(iter(spec.teachers))}
    cfg.model.teachers = {name: dict(config=spec.teachers[name], checkpoint=str(teacher_dirs[name])) for name in used}
    cfg.model.losses = [{"weight": 1.0, **term} for term in entry["losses"]]
    cfg.model.task_loss_weight = entry.get("task_loss_weight", 1.0)
    cfg.model.student.update(entry.get("student", {}))
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), *entry.get("hooks", [])]
    return cfg


def markdown_table(rows: list[dict]) -> str:
    lines = ["| loss | test acc | macro-F1 | train time / epoch |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} | "
                     f"{r['test_f1_mean']:.4f} ± {r['test_f1_std']:.4f} | {r['epoch_seconds_mean']:.2f} s |")
    return "\n".join(lines) + "\n"


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
                quiet(cfg, seed)
                task = progress.add_task(f"teacher {name}"[:18], total=None, status="")
                train_and_test(DemoRun(f"teacher_{name}", config, []), cfg, progress, task, seed)
                teacher_dirs[name] = Path(cfg.work_dir)
            for entry in entries:
                cfg = entry_config(spec, entry, teacher_dirs, seed_out, seed, epochs)
                task = progress.add_task(entry["name"][:18], total=None, status="")
                row = train_and_test(DemoRun(entry["name"], spec.student_config, []), cfg, progress, task, seed)
                row["epoch_seconds"] = row["train_seconds"] / epochs
                results.append(row)
    rows = aggregate(results)
    for row in rows:
        runs = [r["epoch_seconds"] for r in results if r["method"] == row["method"]]
        row["epoch_seconds_mean"] = sum(runs) / len(runs)
    summary = {"config": args.config, "seeds": list(range(args.seeds)), "epochs": epochs, "aggregate": rows,
               "results": results}
    atomic_write_bytes(json.dumps(summary, indent=1).encode(), out / "compare.json")
    atomic_write_bytes(markdown_table(rows).encode(), out / "compare.md")
    plot_summary(results, rows, out / "compare.png")
    console.print(markdown_table(rows))
    console.print(f"wrote {out / 'compare.md'}, compare.json and compare.png")
    return summary


if __name__ == "__main__":
    main()
