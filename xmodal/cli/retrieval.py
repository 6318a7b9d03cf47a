"""``xmodal-retrieval``: Recall@K of query embeddings against a gallery, from .npy files and a pairs CSV.

    xmodal-retrieval --queries Q.npy --gallery G.npy --pairs PAIRS.csv [--k 1 5 10] [--direction q2g|both]
                     [--json OUT.json] [--index flat|ivf|hnsw] [--gpu] [--skip-invalid] [--batch-size N]

``PAIRS.csv`` has the header ``query,gallery`` and one positive pair of 0-based row indices per line;
a query with several positives has several lines. ``q2g`` ranks the gallery for every query;
``both`` adds ``g2q``: every gallery row that some pair names as a query, the queries paired with it as
its positives (gallery rows without a pair are left out and counted). A k at or above the gallery size
gives 100 % by construction: a warning says so and the table marks the column "capped".
Recall@k of a query is 1 when any positive is among its k nearest rows by cosine similarity.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from xmodal.apis.errors import cli_errors
from xmodal.evaluation.retrieval import INDEXES, recall_at_k_pairs, rerank_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="xmodal-retrieval",
        description=__doc__.splitlines()[0].replace("``", "") + " No model is built: for a trained xmodal checkpoint, "
                    "tools/eval_retrieval.py CONFIG CHECKPOINT embeds a dataset split and reports the same metric.")
    parser.add_argument("--queries", required=True, help="query embeddings, .npy (rows x dim)")
    parser.add_argument("--gallery", required=True, help="gallery embeddings, .npy (rows x dim)")
    parser.add_argument("--pairs", required=True, help="CSV with header 'query,gallery': positive pairs, 0-based rows")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="cut-offs (default: 1 5 10)")
    parser.add_argument("--direction", choices=("q2g", "both"), default="q2g")
    parser.add_argument("--json", help="also write the results to this JSON file (atomically)")
    parser.add_argument("--index", choices=INDEXES, default="flat",
                        help="flat: exact; chunked: exact, the gallery read in chunks (memory: one chunk); rerank: "
                             "IVF 8-bit candidates re-ranked exactly, uncertified queries searched exhaustively; "
                             "ivf / hnsw: approximate")
    parser.add_argument("--nlist", type=int, help="IVF lists (default ~4 sqrt(gallery rows); rerank: ~sqrt)")
    parser.add_argument("--nprobe", type=int, help="IVF lists searched per query (default min(nlist, 32); "
                                                   "rerank: nlist / 128)")
    parser.add_argument("--k-prime", type=int, help="rerank: candidates re-ranked per query (default 10 x max k)")
    parser.add_argument("--rerank-fallback", choices=("exact", "none"), default="exact",
                        help="rerank: search uncertified queries exhaustively (exact, default) or keep their "
                             "re-ranked lists and print the difference measured on --verify of them")
    parser.add_argument("--verify", type=int, default=1000, help="rerank, fallback none: queries checked exactly")
    parser.add_argument("--gpu", action="store_true", help="search on GPU 0 (needs a faiss GPU build)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="drop zero-norm rows and queries without a positive (counted) instead of failing")
    parser.add_argument("--batch-size", type=int, default=16384, help="queries per FAISS search call")
    args = parser.parse_args(argv)
    bad_k = [k for k in args.k if k < 1]
    if bad_k:
        parser.error(f"--k: every k must be >= 1, got {bad_k[0]}")
    args.k = sorted(set(args.k))
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


def load_embeddings(path: str) -> np.ndarray:
    """A 2-D real-valued .npy array, memory-mapped (validated row by row later)."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: file not found")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected a single .npy array, got {type(array).__name__}")
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array (rows x dim), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{path}: expected real numbers, got dtype {array.dtype}")
    if not len(array):
        raise ValueError(f"{path}: no rows")
    return array


def load_pairs(path: str, num_queries: int, num_gallery: int) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, gallery rows) of every pair line; errors name the line (the header is line 1)."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: file not found")
    pair_q, pair_g = [], []
    limits = {"query": num_queries, "gallery": num_gallery}
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: tolerate a BOM from spreadsheet exports
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["query", "gallery"]:
            raise ValueError(f"{path} line 1: expected the header 'query,gallery', got {','.join(header or [])!r}")
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != 2:
                raise ValueError(f"{path} line {line}: expected 2 fields 'query,gallery', got {len(fields)}")
            values = []
            for what, text in zip(("query", "gallery"), fields):
                try:
                    value = int(text.strip())
                except ValueError:
                    raise ValueError(f"{path} line {line}: {what} index {text.strip()!r} is not an integer") from None
                if not 0 <= value < limits[what]:
                    raise ValueError(f"{path} line {line}: {what} index {value} out of range "
                                     f"[0, {limits[what] - 1}]")
                values.append(value)
            pair_q.append(values[0])
            pair_g.append(values[1])
    if not pair_q:
        raise ValueError(f"{path}: no pairs (only the header): every query needs at least one positive")
    return np.asarray(pair_q, dtype=np.int64), np.asarray(pair_g, dtype=np.int64)


def evaluate(args: argparse.Namespace) -> dict:
    queries, gallery = load_embeddings(args.queries), load_embeddings(args.gallery)
    pair_q, pair_g = load_pairs(args.pairs, len(queries), len(gallery))
    common = dict(index=args.index, gpu=args.gpu, batch_size=args.batch_size, skip_invalid=args.skip_invalid,
                  positives_name=args.pairs)
    if args.index in ("ivf", "rerank"):
        common.update(nlist=args.nlist, nprobe=args.nprobe)
    if args.index == "rerank":
        common.update(k_prime=args.k_prime, fallback=args.rerank_fallback, verify=args.verify)
    results: dict = {"queries": args.queries, "gallery": args.gallery, "pairs": args.pairs, "index": args.index,
                     "k": list(args.k), "num_pairs": len(pair_q)}
    runs = [("q2g", queries, gallery, pair_q, pair_g, (args.queries, args.gallery), None, 0)]
    if args.direction == "both":
        # g2q: a gallery row nobody paired with (the usual case: a gallery larger than the query set)
        # has nothing to retrieve; it is left out and counted, not an error
        paired = np.unique(pair_g)
        position = np.full(len(gallery), -1, dtype=np.int64)
        position[paired] = np.arange(len(paired))
        runs.append(("g2q", np.asarray(gallery[paired]), queries, position[pair_g], pair_q,
                     (args.gallery, args.queries), ("gallery row", paired.tolist()), len(gallery) - len(paired)))
    for direction, q, g, pq, pg, names, ids, unpaired in runs:
        try:
            results[direction] = recall_at_k_pairs(q, g, pq, pg, args.k, names=names, row_ids=(ids, None), **common)
        except ValueError as err:
            raise ValueError(f"{direction}: {err}") from None
        results[direction]["skipped_no_positive"] = unpaired
        results[direction]["capped_k"] = [k for k in args.k if k >= results[direction]["num_gallery"]]
    return results


def warnings_for(results: dict) -> list[str]:
    """What a reader of the table must know: rows left out, and recalls that are 100 % by construction."""
    lines = []
    for direction in ("q2g", "g2q"):
        if direction in results and (line := rerank_summary(results[direction], results["k"])):
            lines.append(f"{direction}: {line}")
    g2q = results.get("g2q")
    if g2q and g2q["skipped_no_positive"]:
        lines.append(f"note: g2q: {g2q['skipped_no_positive']} gallery row(s) have no positive in {results['pairs']} "
                     f"and were left out as g2q queries")
    for direction in ("q2g", "g2q"):
        capped = results.get(direction, {}).get("capped_k")
        if capped:
            size = results[direction]["num_gallery"]
            lines.append(f"warning: {direction}: k = {', '.join(map(str, capped))} >= the gallery size {size}: every "
                         f"query finds a positive among all {size} rows, so R@k is 100 % by construction; those "
                         f"columns are marked 'capped'")
    return lines


def print_table(results: dict, ks: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Recall@K ({results['index']} index, cosine similarity)")
    capped = {k for d in ("q2g", "g2q") for k in results.get(d, {}).get("capped_k", [])}
    for name in ("direction", "queries", "gallery", *(f"R@{k}" + (" (capped)" if k in capped else "") for k in ks),
                 "skipped q/g"):
        table.add_column(name, justify="left" if name == "direction" else "right")
    for direction in ("q2g", "g2q"):
        if direction in results:
            r = results[direction]
            table.add_row(direction, str(r["num_queries"]), str(r["num_gallery"]),
                          *(f"{100 * r[f'recall@{k}']:.2f}" + ("*" if k in r["capped_k"] else "") for k in ks),
                          f"{r['skipped_queries'] + r['skipped_no_positive']}/{r['skipped_gallery']}")
    Console().print(table)
    for line in warnings_for(results):
        print(line, file=sys.stderr)


def write_json(results: dict, path: str) -> None:
    from xmodal.engine.checkpoint import atomic_write_bytes  # temp file + rename: never a half-written file

    atomic_write_bytes((json.dumps(results, indent=2) + "\n").encode(), path)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Console entry point; bad input exits with status 2 and a one-line ``error: ...`` instead of a traceback."""
    args = parse_args(argv)
    results = evaluate(args)
    print_table(results, list(args.k))
    if args.json:
        write_json(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
