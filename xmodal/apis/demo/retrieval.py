"""The retrieval demo (``python tools/demo.py --task retrieval``): on the embedded shapes-captions set,
train the larger dual-encoder teacher, then the tiny dual-encoder student with ITC alone, with CPRD
and with DCD from that teacher, and compare image-text Recall@K on the held-out test split.

Each row is an ordinary run of a config in ``configs/retrieval/``: the best epoch is chosen on the
validation split's mean recall, the reported numbers are from the test split.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from xmodal.apis.config import load_config, set_max_epochs
from xmodal.apis.demo.common import CONFIG_DIR, DemoRun, mean_and_std, needed, quiet, run_all, train_best_and_test
from xmodal.engine.checkpoint import atomic_write_bytes

RUNS = [
    DemoRun("teacher_base_clip", "retrieval/teacher_shapes.py", ["image", "text"]),
    DemoRun("student_itc", "retrieval/student_shapes.py", ["image", "text"]),
    DemoRun("student_cprd", "retrieval/cprd_shapes.py", ["image", "text"], {"teacher": "teacher_base_clip"}),
    DemoRun("student_dcd", "retrieval/dcd_shapes.py", ["image", "text"], {"teacher": "teacher_base_clip"}),
]
KEYS = [f"{d}_retrieval_recall@{k}" for d in ("text", "image") for k in (1, 5, 10)] + ["mean_recall"]


def _config(run: DemoRun, out: Path, seed: int, epochs: int, work_dirs: dict[str, Path]):
    cfg = load_config(CONFIG_DIR / run.config, work_dir=str(out / run.method))
    set_max_epochs(cfg, epochs)
    quiet(cfg, seed)
    for method in run.teachers.values():  # the teacher is the run trained earlier in this demo
        cfg.model.teacher.config = str(CONFIG_DIR / next(r.config for r in RUNS if r.method == method))
        cfg.model.teacher.checkpoint = str(work_dirs[method])
    return cfg


def train_and_test(run: DemoRun, cfg, progress, task_id, seed: int) -> dict:
    done = train_best_and_test(cfg, progress, task_id)
    progress.update(task_id, status=f"test mean R {done.metrics['mean_recall']:.3f}")
    return {"method": run.method, "seed": seed, **{k: float(done.metrics[k]) for k in KEYS},
            "train_seconds": round(done.seconds, 2), "best_checkpoint": str(done.best), "history": done.history}


def aggregate(results: list[dict]) -> list[dict]:
    return mean_and_std(results, (*KEYS, "train_seconds"))


def print_table(console, rows: list[dict]) -> None:
    from rich.table import Table

    several = len(rows[0]["seeds"]) > 1
    title = "shapes-captions (synthetic): test split, Recall@K in %"
    table = Table(title=title + (f" ({len(rows[0]['seeds'])} seeds, mean ± std)" if several else ""))
    table.add_column("method")
    for name in ("i→t R@1", "i→t R@5", "i→t R@10", "t→i R@1", "t→i R@5", "t→i R@10", "mean", "train time"):
        table.add_column(name, justify="right")

    def cell(row: dict, key: str) -> str:
        mean = 100 * row[f"{key}_mean"]
        return f"{mean:.1f} ± {100 * row[f'{key}_std']:.1f}" if several else f"{mean:.1f}"

    for r in rows:
        table.add_row(r["method"], *(cell(r, k) for k in KEYS), f"{r['train_seconds_mean']:.0f} s")
    console.print(table)


def run_demo(args: argparse.Namespace, console) -> dict:
    from xmodal.data.shapes_captions import build_shapes_captions

    runs = needed(args.methods, RUNS)  # a bad --methods fails before anything is written
    epochs = args.epochs or (2 if args.quick else 20)
    out = Path(args.out if args.out != "work_dirs/demo" else "work_dirs/demo_retrieval")
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mmengine").setLevel(logging.ERROR)
    with console.status("shapes-captions: rendering the dataset (first run only; cached afterwards)..."):
        root = build_shapes_captions()
    console.print(f"shapes-captions (synthetic) at {root}")
    results = run_all(runs, args.seeds, out, console,
                      lambda run, seed_out, seed, dirs: _config(run, seed_out, seed, epochs, dirs), train_and_test)
    rows = aggregate(results)
    summary = {"dataset": "shapes-captions (synthetic)", "data_root": str(root), "seeds": args.seeds,
               "epochs": epochs, "quick": args.quick, "aggregate": rows, "results": results}
    atomic_write_bytes(json.dumps(summary, indent=1).encode(), out / "summary.json")
    print_table(console, rows)
    console.print(f"wrote {out / 'summary.json'}")
    return summary
