"""Distiller scaling: epoch time vs the number of teachers and vs the dataset size (live teachers).

    python benchmarks/scaling.py [--teachers 1 2 4 8] [--sizes 10000 100000] [--epochs 2]

The synthetic task of ``benchmarks/teacher_cache.py`` (memory-mapped ``PairedDataset``, an MLP
student, image+audio MLP teachers, one KD term per teacher) with small models, so the whole run
takes minutes on 2 CPU cores. Table 1 varies the teachers at ``--teacher-samples`` samples; table 2
varies the training samples with ``--size-teachers`` teachers. Each row is the median of
``--epochs`` epochs after a short warm-up; time per sample shows linearity, and "ratio" is the epoch
time relative to the first row (table 1) or the time per sample relative to the first row (table 2,
where 1.00 means linear in the dataset size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.teacher_cache import build, distiller_config, epoch_seconds, write_dataset  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--teacher-samples", type=int, default=10_000, help="training samples of table 1")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="training samples, table 2")
    parser.add_argument("--size-teachers", type=int, default=2, help="teachers in table 2")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--in-dim", type=int, default=64)
    parser.add_argument("--student-width", type=int, default=64)
    parser.add_argument("--teacher-width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per row (the median is reported)")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.teachers, args.teacher_samples, args.sizes, args.batch_size = [1, 2], 256, [256, 512], 64
        args.epochs, args.warmup_steps = 1, 2
    return args


def measure(args, root: Path, teachers: int) -> float:
    cfg = distiller_config(teachers, args.in_dim, args.student_width, args.teacher_width)
    model, wrapper, _, loader = build(cfg, root, args.batch_size)
    for step, batch in enumerate(loader):  # warm-up: allocator, kernels, page cache of the first rows
        if step >= args.warmup_steps:
            break
        model.train_step(batch, optim_wrapper=wrapper)
    return statistics.median(epoch_seconds(model, wrapper, loader) for _ in range(args.epochs))


def main(argv=None) -> None:
    from mmengine.registry import init_default_scope

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    init_default_scope("xmodal")
    with tempfile.TemporaryDirectory(prefix="xmodal-scaling-bench-") as tmp:
        roots = {n: write_dataset(Path(tmp) / f"data_{n}", n, args.in_dim)
                 for n in sorted({args.teacher_samples, *args.sizes})}
        by_teachers = [(t, measure(args, roots[args.teacher_samples], t)) for t in args.teachers]
        by_size = [(n, measure(args, roots[n], args.size_teachers)) for n in args.sizes]

    print(f"\nDistiller scaling: batch {args.batch_size}, in_dim {args.in_dim}, student {args.student_width}, "
          f"teachers {args.teacher_width}x2 per modality, {torch.get_num_threads()} threads, "
          f"median of {args.epochs} epochs")
    print(f"\nvs teachers ({args.teacher_samples} samples)")
    print(f"{'teachers':>8} {'epoch s':>9} {'us/sample':>10} {'ratio':>7}")
    for teachers, seconds in by_teachers:
        print(f"{teachers:>8} {seconds:>9.2f} {1e6 * seconds / args.teacher_samples:>10.1f} "
              f"{seconds / by_teachers[0][1]:>7.2f}")
    print(f"\nvs dataset size ({args.size_teachers} teachers)")
    print(f"{'samples':>8} {'epoch s':>9} {'us/sample':>10} {'ratio':>7}")
    base = by_size[0][1] / by_size[0][0]
    for samples, seconds in by_size:
        print(f"{samples:>8} {seconds:>9.2f} {1e6 * seconds / samples:>10.1f} {seconds / samples / base:>7.2f}")


if __name__ == "__main__":
    main()
