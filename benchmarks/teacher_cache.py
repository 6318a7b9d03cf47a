"""Distiller teacher cache: epoch time with live teachers vs cached teacher outputs, for 1 and 4 teachers.

    python benchmarks/teacher_cache.py [--samples 20000] [--teachers 1 4] [--epochs 3]

A synthetic two-modality dataset in xmodal's on-disk format (``PairedDataset``, memory-mapped) and
a Distiller with one KD term per teacher (the teachers: two-modality MLPs, much wider than the
single-modality student). An epoch is the loader plus ``Distiller.train_step`` over the training
split. "live" runs every teacher each step; "cached" builds the cache once (``build s``, with its
progress bar) and then reads the teachers' logits by the batch's ``index``. Reported: the median
epoch of ``--epochs`` after one warm-up epoch, and the cached run's speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="training samples")
    parser.add_argument("--teachers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--in-dim", type=int, default=128, help="width of each synthetic modality")
    parser.add_argument("--student-width", type=int, default=128)
    parser.add_argument("--teacher-width", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per mode (the median is reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.batch_size, args.in_dim, args.student_width, args.teacher_width = 512, 64, 16, 16, 32
        args.epochs = 1
    return args


def write_dataset(root: Path, samples: int, in_dim: int, classes: int = 10, seed: int = 0) -> Path:
    """``samples`` training rows (image, audio: ``in_dim`` floats each) plus tiny val/test splits."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, classes, samples + 2)
    for name in ("image", "audio"):
        array = np.lib.format.open_memmap(root / f"{name}.npy", mode="w+", dtype=np.float32,
                                          shape=(samples + 2, in_dim))
        for start in range(0, samples + 2, 65_536):  # chunked: 100k rows need no second copy
            stop = min(start + 65_536, samples + 2)
            shift = (labels[start:stop, None] / classes).astype(np.float32)  # a weak class signal
            array[start:stop] = rng.standard_normal((stop - start, in_dim), dtype=np.float32) + shift
        array.flush()
    np.save(root / "labels.npy", labels.astype(np.int64))
    (root / "meta.json").write_text(json.dumps({
        "name": "synthetic-bench", "version": "1", "task": "classification",
        "classes": [str(c) for c in range(classes)],
        "modalities": {m: {"shape": [in_dim], "dtype": "float32"} for m in ("image", "audio")}}))
    (root / "splits.json").write_text(json.dumps({"train": list(range(samples)), "val": [samples],
                                                  "test": [samples + 1]}))
    return root


def distiller_config(teachers: int, in_dim: int, student_width: int, teacher_width: int,
                     classes: int = 10) -> dict:
    """A Distiller: an MLP image student, ``teachers`` image+audio MLP teachers, one KD term each."""
    head = dict(type="ClsHead", num_classes=classes)
    mlp = dict(type="FeatureMLP", in_dim=in_dim)
    student = dict(type="ModalityClassifier", head=head, encoders=dict(image=dict(mlp, hidden_dims=(student_width,))))
    teacher = dict(type="ModalityClassifier", head=head, fusion=dict(type="ConcatFusion", out_dim=teacher_width),
                   encoders=dict(image=dict(mlp, hidden_dims=(teacher_width,) * 2),
                                 audio=dict(mlp, hidden_dims=(teacher_width,) * 2)))
    return dict(type="Distiller", student=student,
                teachers={f"t{i}": dict(model=teacher, allow_random_init=True) for i in range(teachers)},
                losses=[dict(type="KDLoss", name=f"kd_t{i}", weight=1.0 / teachers, student="logits",
                             teacher=f"t{i}.logits", temperature=4.0) for i in range(teachers)])


def build(model_cfg: dict, root: Path, batch_size: int):
    """The Distiller, its optimizer wrapper, the training set and a shuffling loader."""
    from mmengine.dataset import default_collate
    from mmengine.optim import OptimWrapper

    from xmodal.data import PairedDataset
    from xmodal.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(model_cfg).train()
    wrapper = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9))
    dataset = PairedDataset(root, "train", check_finite=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=default_collate,
                                         generator=torch.Generator().manual_seed(0))
    return model, wrapper, dataset, loader


def epoch_seconds(model, wrapper, loader) -> float:
    start = time.perf_counter()
    for batch in loader:
        model.train_step(batch, optim_wrapper=wrapper)
    return time.perf_counter() - start


def median_epoch(model, wrapper, loader, epochs: int) -> float:
    epoch_seconds(model, wrapper, loader)  # warm-up (allocator, kernels, page cache)
    return statistics.median(epoch_seconds(model, wrapper, loader) for _ in range(epochs))


def main(argv=None) -> None:
    from mmengine.dataset import default_collate
    from mmengine.registry import init_default_scope

    from xmodal.distill.distiller_cache import build_distiller_cache

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    init_default_scope("xmodal")
    rows = []
    with tempfile.TemporaryDirectory(prefix="xmodal-cache-bench-") as tmp:
        root = write_dataset(Path(tmp) / "data", args.samples, args.in_dim)
        for teachers in args.teachers:
            cfg = distiller_config(teachers, args.in_dim, args.student_width, args.teacher_width)
            model, wrapper, dataset, loader = build(cfg, root, args.batch_size)
            live = median_epoch(model, wrapper, loader, args.epochs)
            model, wrapper, dataset, loader = build(dict(cfg, teacher_cache=dict()), root, args.batch_size)
            start = time.perf_counter()
            model.attach_cache(build_distiller_cache(model, dataset, default_collate, Path(tmp) / "cache",
                                                             args.batch_size))
            build_s = time.perf_counter() - start
            cached = median_epoch(model, wrapper, loader, args.epochs)
            rows.append((teachers, live, build_s, cached))

    print(f"\nDistiller teacher cache: {args.samples} training samples, batch {args.batch_size}, in_dim "
          f"{args.in_dim}, student {args.student_width}, teachers {args.teacher_width}x2 per modality, "
          f"{torch.get_num_threads()} threads, median of {args.epochs} epochs")
    print(f"{'teachers':>8} {'live epoch s':>13} {'cache build s':>14} {'cached epoch s':>15} "
          f"{'live samples/s':>15} {'cached samples/s':>17} {'speed-up':>9}")
    for teachers, live, build_s, cached in rows:
        print(f"{teachers:>8} {live:>13.2f} {build_s:>14.2f} {cached:>15.2f} {args.samples / live:>15.0f} "
              f"{args.samples / cached:>17.0f} {live / cached:>8.1f}x")


if __name__ == "__main__":
    main()
