"""The retrieval demo (``python tools/demo.py --task retrieval``): on the embedded shapes-captions set,
train the larger dual-encoder teacher, then the tiny dual-encoder student with ITC alone, with CPRD
and with DCD from that teacher, and compare image-text Recall@K on the held-out test split.

Each row is an ordinary run of a config in ``configs/retrieval/``: the best epoch is chosen on the
validation split's mean recall, the reported numbers are from the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xmodal.apis.config import load_config, set_max_epochs
from xmodal.apis.demo.common import CONFIG_DIR, DemoRun, mean_and_std, quiet, run_suite, train_best_and_test

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

    suite = run_suite(args, console, RUNS, "shapes-captions (synthetic)", build_shapes_captions,
                      "work_dirs/demo_retrieval", (20, 2), _config, train_and_test)
    out, results = suite.out, suite.results
    rows = aggregate(results)
    summary = suite.write_summary(args, rows)
    print_table(console, rows)
    console.print(f"wrote {out / 'summary.json'}")
    return summary
