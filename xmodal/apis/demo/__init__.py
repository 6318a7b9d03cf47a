"""The demos (``python tools/demo.py``): one suite per task, each training teachers and students from the
shipped configs on an embedded data set and comparing them on its held-out test split.

A suite is a module with ``RUNS`` (the rows, teachers first) and ``run_demo(args, console)``;
``SUITES`` picks one by ``--task``. The helpers the suites share are in :mod:`xmodal.apis.demo.common`.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from xmodal.apis.demo import bev, classification, retrieval
from xmodal.apis.errors import cli_errors

SUITES: dict[str, ModuleType] = {"classification": classification, "retrieval": retrieval, "bev": bev}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Multimodal teachers -> image-only students on digits-av.")
    parser.add_argument("--quick", action="store_true",
                        help="a few epochs per model: a smoke run (about 2 minutes on 2 cores)")
    parser.add_argument("--out", default="work_dirs/demo", help="output directory (default: work_dirs/demo)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds; with several, the table shows mean ± std (the dataset is fixed)")
    parser.add_argument("--epochs", type=int, help="epochs per model (default: 30, or 4 with --quick)")
    parser.add_argument("--task", choices=tuple(SUITES), default="classification",
                        help="classification: digits-av image students (default); retrieval: shapes-captions "
                        "dual-encoder students with CPRD/DCD; bev: synthetic-scenes camera BEV detectors with "
                        "UniDistill from a LiDAR detector")
    parser.add_argument("--labelled", type=float, nargs="+", default=[0.1], metavar="FRACTION",
                        help="classification: the students' labelled fraction(s) of their half of the training "
                        "split, e.g. 0.05 0.1 1.0 (default 0.1)")
    parser.add_argument("--teacher-labels", choices=("disjoint", "same"), default="disjoint",
                        help="classification: teachers learn from the other half's labels (disjoint, default) or "
                        "from the students' labelled samples only (same: the hardest case)")
    parser.add_argument("--full-labels", action="store_true",
                        help="classification: the full-label table (every model on the whole training split)")
    rows = "; ".join(f"{task}: {' '.join(r.method for r in suite.RUNS)}" for task, suite in SUITES.items())
    parser.add_argument("--methods", nargs="+", help=f"run only these rows (and the teachers they need); {rows}")
    return parser.parse_args(argv)


def run_demo(args: argparse.Namespace) -> dict:
    """Run the suite of ``args.task`` and return its summary (also written to its output directory)."""
    from rich.console import Console

    return SUITES[args.task].run_demo(args, Console())


@cli_errors
def main(argv: list[str] | None = None) -> dict:
    return run_demo(parse_args(argv))


if __name__ == "__main__":
    main()
