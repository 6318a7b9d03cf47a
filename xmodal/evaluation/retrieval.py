"""Retrieval Recall@K over embeddings: FAISS search, a dense torch reference, an mmengine metric.

Definition (as CLIP_benchmark and the standard image-text retrieval protocol): every query has a set
of positive gallery rows (an image has its 5 captions, a caption its one image). Recall@k of a query
is 1 when *any* of its positives is among its k nearest gallery rows by cosine similarity, else 0;
the reported value is the mean over queries.

Ties. Neighbours are ordered by score, highest first, and rows with *equal* scores by row index,
lowest first (a stable sort). Recall@k is therefore well defined when several gallery rows share the
k-th score (duplicate captions or images give exactly equal scores): the tied rows with the lowest
indices fill the top k, and a tied row counts only if it is one of the query's positives, so a
positive tied with the k-th neighbour but with a higher row index is a miss. Neither FAISS (its heap
keeps an arbitrary subset of the rows tied at the k-th score) nor ``torch.topk`` follows this order by
itself: the FAISS path retrieves one neighbour more than the largest k, decides every query whose
best positive scores above the last retrieved score from the list, and re-ranks the rare query whose
answer depends on rows tied at that boundary against the whole gallery; the dense reference counts
the rows ahead of the best positive when it ties with the k-th score. Both then give the same
per-query hits whenever their float32 scores agree; scores that differ only by rounding (different
rows ~1e-7 apart) can still be ordered differently by the two. IVF and HNSW are approximate: their
lists are used as retrieved (re-sorted by score and row), without the boundary re-ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from xmodal.evaluation.rerank import (
    ROW_CHUNK,
    ZERO_NORM,
    GalleryReader,
    build_candidate_index,
    certified_search,
    exact_search,
    l2_normalise,
    release_pages,
    row_norms,
    rows_ahead,
)
from xmodal.registry import METRICS


def _row_norms(x: np.ndarray) -> np.ndarray:
    norms = [np.zeros(0)]
    for start in range(0, len(x), ROW_CHUNK):
        norms.append(row_norms(np.asarray(x[start:start + ROW_CHUNK], dtype=np.float32)))
        release_pages(x)  # a memory-mapped gallery is read once here: keep only a chunk resident
    return np.concatenate(norms)


def _default_nlist(n: int) -> int:
    # ~4 sqrt(n) lists, but FAISS's k-means wants >= 39 training points per centroid
    return max(1, min(int(round(4 * np.sqrt(n))), n // 39))


def build_index(gallery: np.ndarray, kind: str = "flat", gpu: bool = False, nlist: int | None = None,
                nprobe: int | None = None, hnsw_m: int = 32, ef_search: int = 128, ef_construction: int = 200,
                normalise: bool = True) -> faiss.Index:
    """A FAISS inner-product index over the (L2-normalised) gallery: inner product = cosine similarity.

    ``flat``: exact (``IndexFlatIP``). ``ivf``: ``IndexIVFFlat`` trained on the gallery, ``nlist`` lists
    (default ~4 sqrt(n)), ``nprobe`` searched (default min(nlist, 32); nprobe = nlist is exact). ``hnsw``:
    ``IndexHNSWFlat`` graph with ``hnsw_m`` links per node. IVF and HNSW are for galleries too big for an
    exhaustive search. ``gpu=True`` moves a flat or IVF index to GPU 0 (needs a faiss GPU build).
    """
    if kind not in ("flat", "ivf", "hnsw"):
        raise ValueError(f"build_index: kind must be 'flat', 'ivf' or 'hnsw', got {kind!r}")
    data = l2_normalise(gallery) if normalise else np.ascontiguousarray(gallery, dtype=np.float32)
    if data.ndim != 2 or not len(data):
        raise ValueError(f"build_index: gallery must be a non-empty 2-D array, got shape {data.shape}")
    n, dim = data.shape
    if gpu:
        # Checked before any work: faiss-cpu wheels have no GPU classes at all
        if getattr(faiss, "StandardGpuResources", None) is None or faiss.get_num_gpus() == 0:
            raise ValueError("build_index: gpu=True but FAISS sees no GPU (faiss.get_num_gpus() == 0); the "
                             "faiss-cpu wheel has no GPU support: on a CUDA machine replace it (pip uninstall "
                             "faiss-cpu && pip install faiss-gpu-cu12; docs/retrieval.md), or drop gpu=True / --gpu")
        if kind == "hnsw":
            raise ValueError("build_index: FAISS has no GPU HNSW index; use kind='flat' or 'ivf' with gpu=True")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or _default_nlist(n)
        if not 1 <= nlist <= n:
            raise ValueError(f"build_index: nlist must lie in [1, {n}] (gallery rows), got {nlist}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(data)
        index.nprobe = min(nlist, nprobe or 32)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    index.add(data)
    if gpu:
        res = faiss.StandardGpuResources()
        cpu_index, index = index, faiss.index_cpu_to_gpu(res, 0, index)
        index.referenced_objects = [res, cpu_index]  # the GPU index must not outlive its resources
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int, batch_size: int = 16384,
           normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, gallery rows) per query, searched ``batch_size`` queries at a time.

    Each list is ordered by score, highest first, equal scores by row, lowest first; missing results
    (an approximate index that found fewer than k rows) have row -1 and come last. Which of several
    rows tied at the k-th score make the list is FAISS's choice (see the module docstring).
    """
    if k < 1:
        raise ValueError(f"search: k must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"search: batch_size must be >= 1, got {batch_size}")
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(index.hnsw.efSearch, k)  # HNSW returns at most efSearch results
    scores, rows = [], []
    for start in range(0, len(queries), batch_size):
        block = queries[start:start + batch_size]
        block = l2_normalise(block) if normalise else np.ascontiguousarray(block, dtype=np.float32)
        d, i = index.search(block, k)
        # FAISS's heap leaves equal scores in no useful order; re-sort so the order is the documented one
        order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), -d), axis=-1)
        scores.append(np.take_along_axis(d, order, 1))
        rows.append(np.take_along_axis(i, order, 1))
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(rows)


# --- validation shared by the FAISS path and the dense reference --------------------------------------------


@dataclass
class _Prepared:
    queries: np.ndarray  # normalised, valid query rows only
    gallery: np.ndarray | None  # normalised, valid gallery rows only (None when read in chunks: ``reader``)
    query_rows: np.ndarray  # original row of each kept query
    gallery_rows: np.ndarray  # original row of each kept gallery row
    pair_q: np.ndarray  # pairs in kept (compact) coordinates
    pair_g: np.ndarray
    skipped_queries: int
    skipped_gallery: int
    reader: GalleryReader | None = None  # the valid gallery rows, normalised as read (memory maps)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise ValueError("ks: at least one k is needed")
    bad = [k for k in ks if k < 1]
    if bad:
        raise ValueError(f"ks: every k must be >= 1, got {bad[0]}")
    return ks


def _pairs_from_positives(positives: Sequence[Iterable[int]], n_queries: int, n_gallery: int,
                          name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(positives) != n_queries:
        raise ValueError(f"{name}: {len(positives)} entries for {n_queries} queries (one set of gallery rows "
                         f"per query expected)")
    pair_q, pair_g = [], []
    for q, rows in enumerate(positives):
        if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
            raise ValueError(f"{name}[{q}]: expected a collection of gallery rows (e.g. a set), got {rows!r}")
        for g in rows:
            if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)):
                raise ValueError(f"{name}[{q}]: gallery index {g!r} is not an integer")
            if not 0 <= g < n_gallery:
                raise ValueError(f"{name}[{q}]: gallery index {g} out of range [0, {n_gallery - 1}]")
            pair_q.append(q)
            pair_g.append(int(g))
    return np.asarray(pair_q, dtype=np.int64), np.asarray(pair_g, dtype=np.int64)


def _check_array(x: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows x dim), got shape {x.shape}")
    if not len(x):
        raise ValueError(f"{name}: no rows")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name}: expected real numbers, got dtype {x.dtype}")
    return x


RowIds = tuple[str, Sequence[int]] | None  # (what the ids are, id of each row): shown next to rows in errors


def _where(name: str, row: int, ids: RowIds) -> str:
    return f"{name} row {row}" if ids is None else f"{name} row {row} ({ids[0]} {ids[1][row]})"


def _row_mask(x: np.ndarray, name: str, skip_invalid: bool, ids: RowIds) -> tuple[np.ndarray, np.ndarray]:
    """Rows usable as embeddings and every row's norm; NaN/Inf always raises, zero-norm raises unless
    ``skip_invalid``."""
    norms = _row_norms(x)
    nonfinite = np.flatnonzero(~np.isfinite(norms))
    if len(nonfinite):
        raise ValueError(f"{_where(name, nonfinite[0], ids)}: NaN or Inf values ({len(nonfinite)} such row(s), "
                         f"first shown)")
    zero = norms < ZERO_NORM
    if zero.any() and not skip_invalid:
        rows = np.flatnonzero(zero)
        raise ValueError(f"{_where(name, rows[0], ids)}: zero-norm embedding (L2 norm < {ZERO_NORM:g}; {len(rows)} "
                         f"such row(s), first shown): cosine similarity is undefined; skip_invalid (--skip-invalid) "
                         f"drops such rows")
    return ~zero, norms


def _prepare(queries: np.ndarray, gallery: np.ndarray, pair_q: np.ndarray, pair_g: np.ndarray, *,
             skip_invalid: bool, names: tuple[str, str], positives_name: str,
             row_ids: tuple[RowIds, RowIds] = (None, None), stream: bool = False) -> _Prepared:
    """Validated, normalised inputs; with ``stream`` the gallery is left where it is (e.g. a memory map) and
    read in chunks through ``reader`` instead of being copied."""
    qname, gname = names
    queries, gallery = _check_array(queries, qname), _check_array(gallery, gname)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"{qname} has dim {queries.shape[1]} but {gname} has dim {gallery.shape[1]}: queries and "
                         f"gallery must be embedded in the same space")
    nq, ng = len(queries), len(gallery)
    if not len(pair_q):
        raise ValueError(f"{positives_name}: no pairs (every query needs at least one positive)")
    for arr, n, what in ((pair_q, nq, "query"), (pair_g, ng, "gallery")):
        bad = np.flatnonzero((arr < 0) | (arr >= n))
        if len(bad):
            raise ValueError(f"{positives_name} pair {bad[0]}: {what} index {arr[bad[0]]} out of range [0, {n - 1}]")
    q_ok, _ = _row_mask(queries, qname, skip_invalid, row_ids[0])
    g_ok, g_norms = _row_mask(gallery, gname, skip_invalid, row_ids[1])
    keep = g_ok[pair_g] & q_ok[pair_q]  # a pair with a dropped row cannot be scored
    pair_q, pair_g = pair_q[keep], pair_g[keep]
    has_pos = np.zeros(nq, dtype=bool)
    has_pos[pair_q] = True
    missing = np.flatnonzero(q_ok & ~has_pos)
    if len(missing) and not skip_invalid:
        raise ValueError(f"{_where(qname, missing[0], row_ids[0])}: no positive in {positives_name} "
                         f"({len(missing)} such quer{'y' if len(missing) == 1 else 'ies'}, first shown); every query "
                         f"needs at least one positive; skip_invalid (--skip-invalid) drops such queries")
    q_keep = q_ok & has_pos
    if not q_keep.any():
        raise ValueError(f"{qname}: no query left to evaluate after dropping invalid rows and rows without positive")
    q_new = np.cumsum(q_keep) - 1  # original row -> compact row
    g_new = np.cumsum(g_ok) - 1
    all_valid = bool(g_ok.all())
    reader = GalleryReader(gallery, None if all_valid else np.flatnonzero(g_ok), g_norms[g_ok]) if stream else None
    return _Prepared(
        queries=l2_normalise(queries[q_keep] if not q_keep.all() else queries),
        gallery=None if stream else l2_normalise(gallery if all_valid else gallery[g_ok]),
        query_rows=np.flatnonzero(q_keep), gallery_rows=np.flatnonzero(g_ok),
        pair_q=q_new[pair_q], pair_g=g_new[pair_g],
        skipped_queries=int(nq - q_keep.sum()), skipped_gallery=int(ng - g_ok.sum()), reader=reader)


def _result(p: _Prepared, ks: tuple[int, ...], hits: np.ndarray, return_hits: bool) -> dict:
    out: dict = {f"recall@{k}": float(hits[:, j].mean()) for j, k in enumerate(ks)}
    out.update(num_queries=len(p.queries), num_gallery=len(p.gallery_rows), skipped_queries=p.skipped_queries,
               skipped_gallery=p.skipped_gallery)
    if return_hits:
        out["hits"], out["query_rows"] = hits, p.query_rows
    return out


def _exact_rank(query: np.ndarray, gallery: np.ndarray, positive_rows: np.ndarray) -> int:
    """Rows ranked ahead of the query's best positive (higher score, or equal score and lower row)."""
    scores = gallery @ query
    best = scores[positive_rows].max()
    best_row = positive_rows[scores[positive_rows] == best].min()
    return int((scores > best).sum() + (scores[:best_row] == best).sum())


INDEXES = ("flat", "ivf", "hnsw", "chunked", "rerank")
STREAMED = ("chunked", "rerank")  # read the gallery in chunks (memory maps welcome), never copy it
_NEVER = np.iinfo(np.int64).max  # the rank of a query whose positive was not found


def _positive_lists(p: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sorted by query: the positives of query q are ``pg[lo:hi]`` with ``lo, hi`` from ``pq``."""
    order = np.argsort(p.pair_q, kind="stable")
    return p.pair_q[order], p.pair_g[order]


def _list_ranks(p: _Prepared, q_ids: np.ndarray, scores: np.ndarray, rows: np.ndarray, complete: bool,
                k_max: int, exact_ranks) -> np.ndarray:
    """Rank of each listed query's best positive, from its exact top-m list (m = k_max + 1 unless the list is
    the whole gallery, ``complete``): the position of the first positive when it scores above the last listed
    score (every row ahead of it is then in the list, whatever order FAISS gave rows tied at the boundary);
    ``exact_ranks(queries)`` for the few whose answer hangs on rows tied with the last listed score."""
    ng = len(p.gallery_rows)
    # (query, gallery) pair keys: membership of every listed row in its query's positives, vectorised
    pair_keys = np.unique(p.pair_q * ng + p.pair_g)
    is_pos = np.isin(q_ids[:, None] * ng + rows, pair_keys) & (rows >= 0)  # -1 (no result) aliases nothing
    found, first = is_pos.any(1), is_pos.argmax(1)
    if complete:
        return np.where(found, first, _NEVER)
    last = scores[:, -1]
    certain = found & (scores[np.arange(len(rows)), first] > last)
    rank = np.where(certain, first, _NEVER)
    # Otherwise the best positive scores <= the last listed score. Fewer than k_max rows strictly above it
    # means a tie at the boundary that may decide a hit: re-rank those few queries exactly.
    ahead = (scores > last[:, None]).sum(1)
    if (unsure := np.flatnonzero(~certain & (ahead < k_max))).size:
        rank[unsure] = exact_ranks(q_ids[unsure])
    return rank


def _faiss_hits(p: _Prepared, ks: tuple[int, ...], index: str, gpu: bool, batch_size: int,
                index_kwargs: dict) -> np.ndarray:
    ng, k_max = len(p.gallery), max(ks)
    exact = index == "flat"
    # One extra neighbour: see _list_ranks
    m = min(k_max + 1 if exact else k_max, ng)
    idx = build_index(p.gallery, kind=index, gpu=gpu, normalise=False, **index_kwargs)
    scores, rows = search(idx, p.queries, m, batch_size=batch_size, normalise=False)
    del idx
    pq, pg = _positive_lists(p)

    def exact_ranks(queries: np.ndarray) -> list[int]:
        return [_exact_rank(p.queries[q], p.gallery, pg[slice(*np.searchsorted(pq, [q, q + 1]))]) for q in queries]

    # approximate indexes: the lists as retrieved; whole gallery listed: exact
    rank = _list_ranks(p, np.arange(len(rows)), scores, rows, not exact or m == ng, k_max, exact_ranks)
    return np.stack([rank < k for k in ks], axis=1)


def _streamed_exact_ranks(p: _Prepared, q_ids: np.ndarray) -> np.ndarray:
    """:func:`_exact_rank` for several queries against the chunked gallery: two passes, the first finds each
    query's best positive with the same arithmetic the second counts with."""
    pq, pg = _positive_lists(p)
    queries = p.queries[q_ids]
    best = np.full(len(q_ids), -np.inf, dtype=np.float32)
    best_row = np.full(len(q_ids), _NEVER, dtype=np.int64)
    lo, hi = np.searchsorted(pq, q_ids), np.searchsorted(pq, q_ids + 1)
    owner = np.repeat(np.arange(len(q_ids)), hi - lo)
    positives = np.concatenate([pg[a:b] for a, b in zip(lo, hi)])
    for start, block in p.reader.chunks():
        inside = (positives >= start) & (positives < start + len(block))
        if not inside.any():
            continue
        who, row = owner[inside], positives[inside]
        score = (queries @ block.T)[who, row - start]  # as rows_ahead computes it, so ties compare equal
        for i, r, sc in zip(who, row, score):
            if sc > best[i] or (sc == best[i] and r < best_row[i]):
                best[i], best_row[i] = sc, r
    return rows_ahead(queries, p.reader, best, best_row)


def _streamed_exact_list_ranks(p: _Prepared, q_ids: np.ndarray, k_max: int, gpu: bool) -> np.ndarray:
    """Exact ranks (capped past k_max) of these queries' best positives: one exhaustive pass over the chunks."""
    m = min(k_max + 1, p.reader.n)
    scores, rows = exact_search(p.queries[q_ids], p.reader, m, gpu=gpu)
    return _list_ranks(p, q_ids, scores, rows, m == p.reader.n, k_max, lambda q: _streamed_exact_ranks(p, q))


def _rerank_hits(p: _Prepared, ks: tuple[int, ...], gpu: bool, info: dict, nlist: int | None = None,
                 nprobe: int | None = None, k_prime: int | None = None, fallback: str = "exact",
                 verify: int = 1000, seed: int = 0) -> np.ndarray:
    """Hits from IVF candidates re-ranked exactly (xmodal.evaluation.rerank); queries the certificate does
    not cover are searched exhaustively (``fallback="exact"``: the result is exact search's), or kept as
    re-ranked (``"none"``), a sample of ``verify`` of them checked exactly to measure the difference."""
    if fallback not in ("exact", "none"):
        raise ValueError(f"rerank: fallback must be 'exact' or 'none', got {fallback!r}")
    k_max, ng = max(ks), p.reader.n
    cindex = build_candidate_index(p.reader, nlist, seed=seed)
    nprobe = nprobe or max(1, len(cindex.centroids) // 128)
    k_prime = max(k_max, k_prime or 10 * k_max)
    scores, rows, certified = certified_search(cindex, p.queries, p.reader, k_max, k_prime, nprobe)
    del cindex
    q_ids = np.arange(len(rows))
    # certified lists hold the exact top k_max: the first positive's position is its rank
    rank = _list_ranks(p, q_ids, scores, rows, True, k_max, None)
    unsure = np.flatnonzero(~certified)
    info.update(rerank_queries=len(rows), rerank_nprobe=nprobe, rerank_k_prime=min(k_prime, ng),
                rerank_certified=int(certified.sum()),
                rerank_exact_fallback=0, rerank_uncertified=0)
    if unsure.size and fallback == "exact":
        rank[unsure] = _streamed_exact_list_ranks(p, unsure, k_max, gpu)
        info["rerank_exact_fallback"] = int(unsure.size)
    elif unsure.size:
        sample = np.sort(np.random.default_rng(seed).choice(unsure, min(verify, unsure.size), replace=False))
        info.update(rerank_uncertified=int(unsure.size), rerank_verified=int(sample.size))
        if sample.size:
            exact = _streamed_exact_list_ranks(p, sample, k_max, gpu)
            for k in ks:
                info[f"rerank_differ@{k}"] = int(((rank[sample] < k) != (exact < k)).sum())
    return np.stack([rank < k for k in ks], axis=1)


def recall_at_k(queries: np.ndarray, gallery: np.ndarray, positives: Sequence[Iterable[int]],
                ks: Sequence[int] = (1, 5, 10), *, index: str = "flat", gpu: bool = False, batch_size: int = 16384,
                skip_invalid: bool = False, names: tuple[str, str] = ("queries", "gallery"),
                positives_name: str = "positives", return_hits: bool = False, **index_kwargs) -> dict:
    """Recall@k of ``queries`` against ``gallery`` by cosine similarity, searched with FAISS.

    ``positives[i]`` is the set of gallery rows that are correct for query ``i`` (any of them in the top
    k counts). Returns ``recall@k`` per k (mean over evaluated queries), ``num_queries``, ``num_gallery``
    and ``skipped_queries`` / ``skipped_gallery``: with ``skip_invalid=True``, zero-norm rows and queries
    left without a positive are dropped and counted instead of raising. NaN/Inf rows always raise.
    ``return_hits`` adds ``hits`` (bool, evaluated queries x ks) and their original ``query_rows``.
    ``names`` / ``positives_name`` label the arrays in error messages. ``index_kwargs`` go to
    :func:`build_index` (``nlist``, ``nprobe``, ``hnsw_m``, ...).

    ``index="chunked"``: exact search without copying the gallery (an array or a memory-mapped ``.npy``):
    it is read and normalised in chunks, each searched exhaustively, so memory holds one chunk.
    ``index="rerank"``: the gallery (an array or a memory-mapped ``.npy``) is read in chunks, never copied;
    an IVF index over 8-bit codes proposes ``k_prime`` candidates per query (default 10 x max k), re-ranked
    exactly in fp32, and a query whose list is not certified exact (xmodal.evaluation.rerank) is searched
    exhaustively, so the recalls are exact search's. ``index_kwargs``: ``nlist``, ``nprobe`` (default
    nlist / 128), ``k_prime``, ``fallback="none"`` to keep uncertified lists as they are and ``verify``
    (default 1000) of them checked exactly. Extra keys: ``rerank_certified``, ``rerank_exact_fallback``,
    ``rerank_uncertified``, ``rerank_verified`` and ``rerank_differ@k`` (sampled queries whose hit at k
    differs from exact search).
    """
    ks = _check_ks(ks)
    queries, gallery = _check_array(queries, names[0]), _check_array(gallery, names[1])
    pair_q, pair_g = _pairs_from_positives(positives, len(queries), len(gallery), positives_name)
    return recall_at_k_pairs(queries, gallery, pair_q, pair_g, ks, index=index, gpu=gpu, batch_size=batch_size,
                             skip_invalid=skip_invalid, names=names, positives_name=positives_name,
                             return_hits=return_hits, **index_kwargs)


def recall_at_k_pairs(queries: np.ndarray, gallery: np.ndarray, pair_query: np.ndarray, pair_gallery: np.ndarray,
                      ks: Sequence[int] = (1, 5, 10), *, index: str = "flat", gpu: bool = False,
                      batch_size: int = 16384, skip_invalid: bool = False,
                      names: tuple[str, str] = ("queries", "gallery"), positives_name: str = "pairs",
                      return_hits: bool = False, row_ids: tuple[RowIds, RowIds] = (None, None),
                      **index_kwargs) -> dict:
    """:func:`recall_at_k` with the positives as two parallel arrays of (query row, gallery row) pairs:
    no Python set per query, for million-row inputs (the CLI's path). ``row_ids`` optionally labels
    rows in error messages, e.g. ``("image_index", ids)``."""
    ks = _check_ks(ks)
    stream = index in STREAMED
    p = _prepare(queries, gallery, np.asarray(pair_query, dtype=np.int64), np.asarray(pair_gallery, dtype=np.int64),
                 skip_invalid=skip_invalid, names=names, positives_name=positives_name, row_ids=row_ids, stream=stream)
    if not stream:
        return _result(p, ks, _faiss_hits(p, ks, index, gpu, batch_size, index_kwargs), return_hits)
    info: dict = {}
    if index == "chunked":
        rank = _streamed_exact_list_ranks(p, np.arange(len(p.queries)), max(ks), gpu)
        hits = np.stack([rank < k for k in ks], axis=1)
    else:
        hits = _rerank_hits(p, ks, gpu, info, **index_kwargs)
    return {**_result(p, ks, hits, return_hits), **info}


def rerank_summary(result: dict, ks: Sequence[int]) -> str | None:
    """One line on how an ``index="rerank"`` result relates to exact search, None for other indexes: how many
    queries were certified, searched exhaustively, or (``fallback="none"``) left uncertified, with the
    difference from exact search measured on the verified sample."""
    if "rerank_certified" not in result:
        return None
    n = result["num_queries"]
    line = f"rerank: {result['rerank_certified']:,} of {n:,} queries certified identical to exact search"
    if result["rerank_exact_fallback"]:
        line += f", {result['rerank_exact_fallback']:,} searched exhaustively: R@K identical to exact search"
    elif not result["rerank_uncertified"]:
        line += ": R@K identical to exact search"
    else:
        checked = result.get("rerank_verified", 0)
        line += (f"; {result['rerank_uncertified']:,} not certified (fallback none): R@k may differ from exact search "
                 f"by up to {100 * result['rerank_uncertified'] / n:.2f} points")
        if checked:
            scale = result["rerank_uncertified"] / checked
            line += f"; on {checked:,} of them searched exactly, hits differ at " + ", ".join(
                f"k={k}: {result[f'rerank_differ@{k}']} (about {100 * scale * result[f'rerank_differ@{k}'] / n:.2f} "
                f"points over all)" for k in ks)
    return line


def dense_recall_at_k(queries: np.ndarray, gallery: np.ndarray, positives: Sequence[Iterable[int]],
                      ks: Sequence[int] = (1, 5, 10), *, skip_invalid: bool = False,
                      chunk_elements: int = 1 << 26, names: tuple[str, str] = ("queries", "gallery"),
                      positives_name: str = "positives", return_hits: bool = False) -> dict:
    """Reference Recall@k without FAISS: torch matmul + ``topk`` as in CLIP_benchmark, same result keys.

    Queries are processed in chunks of at most ``chunk_elements`` scores (256 MiB by default) so a 1M-row
    gallery never needs the full score matrix. ``torch.topk`` orders equal scores arbitrarily, so the
    documented tie rule is applied exactly: a query's best positive (highest score, lowest row among
    equal) is in the top k when its score beats the k-th score, or equals it and fewer than k rows are
    ahead of it (higher score, or equal score and lower row) -- counted only for the rare tied queries.
    """
    ks = _check_ks(ks)
    queries, gallery = _check_array(queries, names[0]), _check_array(gallery, names[1])
    pair_q, pair_g = _pairs_from_positives(positives, len(queries), len(gallery), positives_name)
    p = _prepare(queries, gallery, pair_q, pair_g, skip_invalid=skip_invalid, names=names,
                 positives_name=positives_name)
    g = torch.from_numpy(p.gallery)
    ng = len(g)
    k_search = min(max(ks), ng)
    chunk = max(1, chunk_elements // ng)
    order = np.argsort(p.pair_q, kind="stable")
    pq_all, pg_all = p.pair_q[order], p.pair_g[order]
    bounds = np.searchsorted(pq_all, np.arange(0, len(p.queries) + chunk, chunk))
    hits = np.zeros((len(p.queries), len(ks)), dtype=bool)
    for c, start in enumerate(range(0, len(p.queries), chunk)):
        scores = torch.from_numpy(p.queries[start:start + chunk]) @ g.T
        b = len(scores)
        pq = torch.from_numpy(pq_all[bounds[c]:bounds[c + 1]] - start)
        pg = torch.from_numpy(pg_all[bounds[c]:bounds[c + 1]])
        pos_scores = scores[pq, pg]
        best = torch.full((b,), -torch.inf).scatter_reduce(0, pq, pos_scores, "amax")
        at_best = pos_scores == best[pq]
        best_row = torch.full((b,), ng, dtype=torch.int64).scatter_reduce(0, pq[at_best], pg[at_best], "amin")
        kth = torch.topk(scores, k_search, dim=1).values  # sorted, highest first
        tied = torch.zeros(b, dtype=torch.bool)
        chunk_hits = torch.zeros((b, len(ks)), dtype=torch.bool)
        for j, k in enumerate(ks):
            if k >= ng:  # the whole gallery is retrieved: every query (it has a positive) is a hit
                chunk_hits[:, j] = True
                continue
            threshold = kth[:, k - 1]
            chunk_hits[:, j] = best > threshold
            tied |= best == threshold
        for r in torch.nonzero(tied).flatten().tolist():
            row = scores[r]
            ahead = int((row > best[r]).sum()) + int((row[: int(best_row[r])] == best[r]).sum())
            for j, k in enumerate(ks):
                if k < ng and best[r] == kth[r, k - 1]:
                    chunk_hits[r, j] = ahead < k
        hits[start:start + b] = chunk_hits.numpy()
    return _result(p, ks, hits, return_hits)


def image_text_recalls(image_emb: np.ndarray, text_emb: np.ndarray, text_to_image: Sequence[int],
                       ks: Sequence[int] = (1, 5, 10), *, skip_invalid: bool = False,
                       names: tuple[str, str] = ("image_emb", "text_emb"),
                       row_ids: tuple[RowIds, RowIds] = (None, None), **kwargs) -> dict[str, float]:
    """CLIP_benchmark's retrieval keys for paired images and captions.

    ``text_to_image[t]`` is the image row of caption ``t`` (several captions per image). Returns
    ``image_retrieval_recall@k`` (text -> image: each caption a query, its image the one positive),
    ``text_retrieval_recall@k`` (image -> text: each image a query, its captions the positives) and
    ``mean_recall``, the mean of all of them (rsum / 6 for k = 1, 5, 10). With ``skip_invalid`` also
    ``{image,text}_retrieval_skipped_{queries,gallery}``; with ``index="rerank"`` the ``rerank_*`` counts of
    :func:`recall_at_k_pairs` as ``{image,text}_retrieval_rerank_*``. ``kwargs`` go to :func:`recall_at_k_pairs`.
    """
    ks = _check_ks(ks)
    image_emb, text_emb = _check_array(image_emb, names[0]), _check_array(text_emb, names[1])
    t2i = np.asarray(text_to_image)
    if t2i.ndim != 1 or len(t2i) != len(text_emb):
        raise ValueError(f"text_to_image: expected one image row per caption ({len(text_emb)}), got shape {t2i.shape}")
    if not np.issubdtype(t2i.dtype, np.integer):
        raise ValueError(f"text_to_image: expected integer image rows, got dtype {t2i.dtype}")
    bad = np.flatnonzero((t2i < 0) | (t2i >= len(image_emb)))
    if len(bad):
        raise ValueError(f"text_to_image[{bad[0]}]: image index {t2i[bad[0]]} out of range [0, {len(image_emb) - 1}]")
    texts = np.arange(len(t2i), dtype=np.int64)
    common = dict(skip_invalid=skip_invalid, positives_name="text_to_image", **kwargs)
    t2i_res = recall_at_k_pairs(text_emb, image_emb, texts, t2i, ks, names=(names[1], names[0]),
                                row_ids=(row_ids[1], row_ids[0]), **common)
    i2t_res = recall_at_k_pairs(image_emb, text_emb, t2i, texts, ks, names=names, row_ids=row_ids, **common)
    out: dict[str, float] = {}
    for prefix, res in (("image_retrieval", t2i_res), ("text_retrieval", i2t_res)):
        out.update({f"{prefix}_recall@{k}": res[f"recall@{k}"] for k in ks})
    out["mean_recall"] = float(np.mean(list(out.values())))
    for prefix, res in (("image_retrieval", t2i_res), ("text_retrieval", i2t_res)):
        out.update({f"{prefix}_{key}": value for key, value in res.items() if key.startswith("rerank_")})
    if skip_invalid:
        for prefix, res in (("image_retrieval", t2i_res), ("text_retrieval", i2t_res)):
            out[f"{prefix}_skipped_queries"] = res["skipped_queries"]
            out[f"{prefix}_skipped_gallery"] = res["skipped_gallery"]
    return out


def _to_numpy(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if not x.size:
        raise ValueError(f"RetrievalMetric: {what} is empty")
    return x


@METRICS.register_module()
class RetrievalMetric(BaseMetric):
    """Image-text Recall@K (CLIP_benchmark keys and ``mean_recall``) for ``tools/test.py``.

    Record format (one per data sample, e.g. one per caption), a dict with:

    * ``"text_embedding"``: the caption's embedding (1-D) or None, ``"text_index"``: the caption's id;
    * ``"image_embedding"``: its image's embedding (1-D) or None, ``"image_index"``: the image's id
      (also the caption's image when ``text_embedding`` is given).

    Ids are dataset-wide integers. An image embedding repeated for each of its captions, padded
    duplicates from a distributed sampler and records gathered from several ranks are deduplicated by
    id (the first record wins). Galleries are ordered by id; every caption's image needs an embedding.
    """

    default_prefix = None

    def __init__(self, ks: Sequence[int] = (1, 5, 10), index: str = "flat", skip_invalid: bool = False,
                 collect_device: str = "cpu", prefix: str | None = None, **index_kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ks = _check_ks(ks)
        self.index = index
        self.skip_invalid = skip_invalid
        self.index_kwargs = index_kwargs

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for i, sample in enumerate(data_samples):
            image, text = sample.get("image_embedding"), sample.get("text_embedding")
            if image is None and text is None:
                raise ValueError(f"RetrievalMetric: record {i} of the batch has neither image_embedding nor "
                                 f"text_embedding")
            if "image_index" not in sample or (text is not None and "text_index" not in sample):
                raise ValueError(f"RetrievalMetric: record {i} of the batch needs 'image_index' (and 'text_index' "
                                 f"with a text_embedding); got keys {sorted(sample)}")
            # numpy on CPU: results are pickled to rank 0 and must not hold GPU tensors
            self.results.append((int(sample["image_index"]),
                                 None if image is None else _to_numpy(image, "image_embedding"),
                                 None if text is None else int(sample["text_index"]),
                                 None if text is None else _to_numpy(text, "text_embedding")))

    def compute_metrics(self, results: list) -> dict[str, float]:
        images: dict[int, np.ndarray] = {}
        texts: dict[int, tuple[int, np.ndarray]] = {}
        for image_index, image, text_index, text in results:
            if image is not None:
                images.setdefault(image_index, image)
            if text is not None:
                seen = texts.setdefault(text_index, (image_index, text))
                if seen[0] != image_index:
                    raise ValueError(f"RetrievalMetric: text_index {text_index} recorded with image_index "
                                     f"{seen[0]} and {image_index}")
        if not images or not texts:
            raise ValueError(f"RetrievalMetric: need image and text embeddings, got {len(images)} image(s) and "
                             f"{len(texts)} caption(s)")
        image_ids = np.array(sorted(images))
        text_ids = sorted(texts)
        row_of_image = {idx: row for row, idx in enumerate(image_ids.tolist())}
        missing = [t for t in text_ids if texts[t][0] not in row_of_image]
        if missing:
            raise ValueError(f"RetrievalMetric: text_index {missing[0]} belongs to image_index {texts[missing[0]][0]}, "
                             f"which has no image_embedding ({len(missing)} such caption(s), first shown)")
        dims = {len(v) for v in images.values()} | {len(texts[t][1]) for t in text_ids}
        if len(dims) > 1:
            raise ValueError(f"RetrievalMetric: embeddings of different dims {sorted(dims)}")
        image_emb = np.stack([images[i] for i in image_ids.tolist()])
        text_emb = np.stack([texts[t][1] for t in text_ids])
        text_to_image = np.array([row_of_image[texts[t][0]] for t in text_ids], dtype=np.int64)
        return image_text_recalls(image_emb, text_emb, text_to_image, self.ks, skip_invalid=self.skip_invalid,
                                  index=self.index, names=("image embeddings", "text embeddings"),
                                  row_ids=(("image_index", image_ids), ("text_index", text_ids)),
                                  **self.index_kwargs)
