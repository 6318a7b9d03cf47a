"""Retrieval Recall@K: FAISS exact index vs a dense torch matmul + topk reference.

    python benchmarks/retrieval_eval.py [--sizes 10000 100000 1000000] [--queries 10000] [--dim 256]

Galleries of random unit vectors (float32); every query is a noisy copy of one random gallery row, its
one positive (noise ``--noise`` times the signal's norm, so recall falls as the gallery grows and the
metric is not trivially 1). Each (size, method) runs in a fresh subprocess so ``ru_maxrss`` is that
method's own peak; "data" is the peak right after generating the embeddings, before any method runs.
Wall time covers validation, L2 normalisation, index build and search (FAISS) or the chunked matmul +
topk (dense). "agree" compares the per-query hits of the two methods, not just the means.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("faiss-flat", "dense-torch")
KS = (1, 5, 10)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="gallery rows")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--noise", type=float, default=3.0, help="query noise norm / signal norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_data(size: int, num_queries: int, dim: int, noise: float, seed: int):
    """Unit gallery rows, queries = positive + noise, and each query's positive row."""
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((size, dim), dtype=np.float32)
    for start in range(0, size, 65536):  # in place, chunked: no second 1 GiB copy for 1M rows
        block = gallery[start:start + 65536]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    positive = rng.integers(0, size, num_queries)
    noise_vec = rng.standard_normal((num_queries, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
    return gallery, gallery[positive] + noise_vec, positive


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    from xmodal.evaluation.retrieval import dense_recall_at_k, recall_at_k

    gallery, queries, positive = make_data(args.size, args.queries, args.dim, args.noise, args.seed)
    positives = [{int(p)} for p in positive]
    data_rss = _peak_rss_mib()
    fn = recall_at_k if args.worker == "faiss-flat" else dense_recall_at_k
    start = time.perf_counter()
    result = fn(queries, gallery, positives, KS, return_hits=True)
    seconds = time.perf_counter() - start
    np.save(args.out + ".npy", result.pop("hits"))
    result.pop("query_rows")
    result.update(seconds=seconds, peak_rss_mib=_peak_rss_mib(), data_rss_mib=data_rss)
    Path(args.out + ".json").write_text(json.dumps(result))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        for size in args.sizes:
            hits = {}
            for method in METHODS:
                out = str(Path(tmp) / f"{method}-{size}")
                cmd = [sys.executable, __file__, "--worker", method, "--size", str(size), "--out", out,
                       "--queries", str(args.queries), "--dim", str(args.dim), "--noise", str(args.noise),
                       "--seed", str(args.seed), "--threads", str(args.threads)]
                subprocess.run(cmd, check=True)
                result = json.loads(Path(out + ".json").read_text())
                hits[method] = np.load(out + ".npy")
                rows.append((size, method, result))
            differ = int((hits[METHODS[0]] != hits[METHODS[1]]).any(1).sum())
            rows[-1][2]["agree"] = "yes" if not differ else f"no: {differ} queries"
            rows[-2][2]["agree"] = ""

    print(f"\nRecall@K, {args.queries} queries x {args.dim}-d float32, one positive each (noise {args.noise}), "
          f"{args.threads} threads; each row a fresh process")
    head = f"{'gallery':>9} {'method':<12} {'wall s':>8} {'data MiB':>9} {'peak RSS MiB':>13}"
    head += "".join(f" {f'R@{k}':>7}" for k in KS) + "  agree"
    print(head)
    for size, method, r in rows:
        line = f"{size:>9,} {method:<12} {r['seconds']:>8.2f} {r['data_rss_mib']:>9.0f} {r['peak_rss_mib']:>13.0f}"
        line += "".join(f" {100 * r[f'recall@{k}']:>7.2f}" for k in KS) + f"  {r['agree']}"
        print(line)


if __name__ == "__main__":
    main()
