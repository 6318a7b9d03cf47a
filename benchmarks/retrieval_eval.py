"""Retrieval Recall@K: FAISS exact index vs a dense torch matmul + topk reference, and search past one scan.

    python benchmarks/retrieval_eval.py [--sizes 10000 100000 1000000] [--queries 10000] [--dim 256]
    python benchmarks/retrieval_eval.py --sizes 1000000 --methods faiss-flat chunked rerank [--data clustered]

Galleries of random unit vectors (float32; ``--data clustered``: rows drawn around 1,000 centres, as
real embeddings cluster); every query is a noisy copy of one random gallery row, its one positive (noise
``--noise`` times the signal's norm, so recall falls as the gallery grows and the metric is not trivially
1). The arrays are written once per size as .npy files; faiss-flat and dense-torch load them into
memory, ``chunked`` and ``rerank`` (xmodal.evaluation.rerank) memory-map the gallery and read it in
chunks. Each (size, method) runs in a fresh subprocess so ``ru_maxrss`` is that method's own peak;
"data" is the peak right after loading. Wall time covers validation, L2 normalisation, index build and
search. "agree" compares each method's per-query hits with the first method's, not just the means.
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

METHODS = ("faiss-flat", "dense-torch", "chunked", "rerank", "rerank-nofallback")
STREAMED = ("chunked", "rerank", "rerank-nofallback")
KS = (1, 5, 10)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="gallery rows")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--noise", type=float, default=3.0, help="query noise norm / signal norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS[:2]))
    parser.add_argument("--data", choices=("random", "clustered"), default="random")
    parser.add_argument("--nprobe", type=int, help="rerank: IVF lists visited per query (default nlist / 128)")
    parser.add_argument("--worker", choices=(*METHODS, "data"), help=argparse.SUPPRESS)  # internal: one step
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_data(size: int, num_queries: int, dim: int, noise: float, seed: int, kind: str = "random"):
    """Unit gallery rows, queries = positive + noise, and each query's positive row."""
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((size, dim), dtype=np.float32)
    if kind == "clustered":  # each row = one of 1,000 centres + noise of 0.6x its norm
        centres = rng.standard_normal((1000, dim), dtype=np.float32)
        for start in range(0, size, 65536):
            block = gallery[start:start + 65536]
            block *= np.float32(0.6)
            block += centres[rng.integers(0, 1000, len(block))]
    for start in range(0, size, 65536):  # in place, chunked: no second 1 GiB copy for 1M rows
        block = gallery[start:start + 65536]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    positive = rng.integers(0, size, num_queries)
    noise_vec = rng.standard_normal((num_queries, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
    return gallery, gallery[positive] + noise_vec, positive


def write_data(args: argparse.Namespace) -> None:
    gallery, queries, positive = make_data(args.size, args.queries, args.dim, args.noise, args.seed, args.data)
    for name, array in (("gallery", gallery), ("queries", queries), ("positive", positive)):
        np.save(Path(args.dir) / f"{name}.npy", array)


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    from xmodal.evaluation.retrieval import dense_recall_at_k, recall_at_k, recall_at_k_pairs

    folder = Path(args.dir)
    gallery = np.load(folder / "gallery.npy", mmap_mode="r" if args.worker in STREAMED else None)
    queries, positive = np.load(folder / "queries.npy"), np.load(folder / "positive.npy")
    data_rss = _peak_rss_mib()
    start = time.perf_counter()
    if args.worker in STREAMED:
        options = {} if args.worker == "chunked" else dict(nprobe=args.nprobe)
        if args.worker == "rerank-nofallback":
            options.update(fallback="none", verify=1000)
        result = recall_at_k_pairs(queries, gallery, np.arange(len(queries)), positive, KS, return_hits=True,
                                   index="chunked" if args.worker == "chunked" else "rerank", **options)
    else:
        positives = [{int(p)} for p in positive]
        fn = recall_at_k if args.worker == "faiss-flat" else dense_recall_at_k
        result = fn(queries, gallery, positives, KS, return_hits=True)
    seconds = time.perf_counter() - start
    np.save(args.out + ".npy", result.pop("hits"))
    result.pop("query_rows")
    result.update(seconds=seconds, peak_rss_mib=_peak_rss_mib(), data_rss_mib=data_rss)
    Path(args.out + ".json").write_text(json.dumps(result))


def main(argv=None) -> None:
    from xmodal.evaluation.retrieval import rerank_summary

    args = parse_args(argv)
    if args.worker == "data":
        return write_data(args)
    if args.worker:
        return worker(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        for size in args.sizes:
            # written by a child process: a child inherits the RSS this process has when it forks, and the
            # workers' peak RSS must be their own
            subprocess.run([sys.executable, __file__, "--worker", "data", "--size", str(size), "--dir", tmp,
                            "--queries", str(args.queries), "--dim", str(args.dim), "--noise", str(args.noise),
                            "--seed", str(args.seed), "--data", args.data], check=True)
            hits = {}
            for method in args.methods:
                out = str(Path(tmp) / f"{method}-{size}")
                cmd = [sys.executable, __file__, "--worker", method, "--size", str(size), "--out", out, "--dir", tmp,
                       "--threads", str(args.threads)]
                if args.nprobe:
                    cmd += ["--nprobe", str(args.nprobe)]
                subprocess.run(cmd, check=True)
                result = json.loads(Path(out + ".json").read_text())
                hits[method] = np.load(out + ".npy")
                if method != args.methods[0]:
                    differ = int((hits[args.methods[0]] != hits[method]).any(1).sum())
                    result["agree"] = "yes" if not differ else f"no: {differ} queries"
                else:
                    result["agree"] = ""
                rows.append((size, method, result))

    print(f"\nRecall@K, {args.queries} queries x {args.dim}-d float32 ({args.data}), one positive each (noise "
          f"{args.noise}), {args.threads} threads; each row a fresh process")
    head = f"{'gallery':>9} {'method':<12} {'wall s':>8} {'data MiB':>9} {'peak RSS MiB':>13}"
    head += "".join(f" {f'R@{k}':>7}" for k in KS) + "  agree"
    print(head)
    for size, method, r in rows:
        line = f"{size:>9,} {method:<12} {r['seconds']:>8.2f} {r['data_rss_mib']:>9.0f} {r['peak_rss_mib']:>13.0f}"
        line += "".join(f" {100 * r[f'recall@{k}']:>7.2f}" for k in KS) + f"  {r['agree']}"
        print(line)
        if summary := rerank_summary(r, KS):
            print(f"{'':>9} {summary}")


if __name__ == "__main__":
    main()
