"""Search past one exact scan in memory: a gallery read in chunks, candidates from an IVF index over 8-bit
codes, re-ranked exactly in fp32, with a per-query certificate that the re-ranked list is the exact one.

The gallery may be a memory-mapped ``.npy`` (``np.load(path, mmap_mode="r")``): it is read ``chunk_rows``
rows at a time, rows are normalised as they are read, and the pages read are dropped from the process
after each chunk, so memory holds the index (1 byte a dimension a row) and one chunk, not the gallery.

**Candidates and re-ranking.** ``CandidateIndex`` is a FAISS ``IndexIVFScalarQuantizer`` (8-bit codes of
the normalised rows, not of residuals) whose lists are assigned here, so two facts are known per list j:
its centroid c_j and its radius r_j = max ‖x − c_j‖ over its rows (exact fp32 vectors). A query visits
``nprobe`` lists, takes the ``k_prime`` best rows by 8-bit score, and those are re-scored exactly from the
gallery and sorted by score (equal scores by row). Every row that was *not* returned scores at most

* a_k′ + ε_q if it is in a visited list: a_k′ is the k′-th 8-bit score and ε_q = Σ_d |q_d| · step_d / 2 the
  largest error 8-bit codes can make (the code ranges cover every row, so nothing is clipped);
* q·c_j + ‖q‖ r_j if it is in an unvisited list j (Cauchy–Schwarz).

**Certificate.** When the K-th best exact score among the candidates is above both bounds, every row
scoring at least that much is a candidate, so the rank of any row within the top K is its rank in the
whole gallery, ties included: the query's Recall@k for k ≤ K is exactly that of an exhaustive search.
Queries without the certificate are searched exhaustively (:func:`exact_search`, one pass over the
gallery for all of them together) unless the caller opts out and reports the difference instead.
How many queries certify depends on the data: embeddings with cluster structure and a clear best
match certify; isotropic random vectors, whose nearest neighbours are spread over every list, do not.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned, search_preassigned

ZERO_NORM = 1e-12  # rows with a smaller L2 norm have no direction: cosine similarity is undefined
ROW_CHUNK = 65536  # rows per block when scanning/normalising, so temporaries stay small for 1M-row galleries
_SLACK = 1e-5  # float32 rounding of the bounds and scores (|scores| <= 1): a certificate needs this margin


def row_norms(block: np.ndarray) -> np.ndarray:
    # float64 accumulation: float32 squares of large entries overflow and sums lose precision
    return np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))


def l2_normalise(x: np.ndarray, eps: float = ZERO_NORM) -> np.ndarray:
    """Rows scaled to unit L2 norm, as a new C-contiguous float32 array (the input is never modified).

    Rows are divided by max(norm, ``eps``): zero rows stay zero. Validate first to refuse them.
    """
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if out.ndim != 2:
        raise ValueError(f"l2_normalise: expected a 2-D array (rows x dim), got shape {out.shape}")
    for start in range(0, len(out), ROW_CHUNK):
        block = out[start:start + ROW_CHUNK]
        block /= np.maximum(row_norms(block), eps).astype(np.float32)[:, None]
    return out


def release_pages(array: np.ndarray) -> None:
    """Drop a memory-mapped array's resident pages from this process (they stay in the page cache, so a
    later read is cheap): reading a 10 GB gallery chunk by chunk then never holds more than a chunk."""
    base = array
    while not isinstance(base, np.memmap) and isinstance(getattr(base, "base", None), np.ndarray):
        base = base.base
    handle = getattr(base, "_mmap", None)
    if isinstance(base, np.memmap) and handle is not None and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


class GalleryReader:
    """Normalised rows of a gallery, read in chunks from an array or a memory map.

    ``keep``: the gallery rows to use (e.g. without zero-norm rows), in order; they are numbered 0..n−1
    here ("compact" rows). ``norms``: their L2 norms (float64), computed once by the caller's validation.
    """

    def __init__(self, gallery: np.ndarray, keep: np.ndarray | None = None, norms: np.ndarray | None = None,
                 chunk_rows: int = ROW_CHUNK) -> None:
        self.gallery, self.keep, self.chunk_rows = gallery, keep, int(chunk_rows)
        self.n = len(gallery) if keep is None else len(keep)
        self.dim = gallery.shape[1]
        if norms is None:
            norms = np.concatenate([row_norms(np.asarray(b, dtype=np.float32)) for _, b in self._raw_chunks()]
                                   or [np.zeros(0)])
        self.norms = np.maximum(norms, ZERO_NORM).astype(np.float32)

    def _raw_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n, self.chunk_rows):
            stop = min(start + self.chunk_rows, self.n)
            if self.keep is None:
                yield start, self.gallery[start:stop]
            else:
                rows = self.keep[start:stop]
                yield start, self.gallery[rows[0]:rows[-1] + 1][rows - rows[0]]
            release_pages(self.gallery)

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first compact row, normalised float32 block) for every chunk, in order."""
        for start, raw in self._raw_chunks():
            block = np.array(raw, dtype=np.float32, order="C", copy=True)
            block /= self.norms[start:start + len(block), None]
            yield start, block

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """Normalised float32 rows (compact numbering), any order, repeats allowed."""
        rows = np.asarray(rows, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        source = unique if self.keep is None else self.keep[unique]
        block = np.asarray(self.gallery[source], dtype=np.float32)  # sorted reads: sequential on disk
        release_pages(self.gallery)
        block = block / self.norms[unique, None]
        return block[inverse.reshape(rows.shape)]


def sort_lists(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's list by score, highest first, equal scores by row (lowest first); row −1 last."""
    order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -scores), axis=-1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def exact_search(queries: np.ndarray, reader: GalleryReader, k: int, gpu: bool = False,
                 query_batch: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (scores, compact rows) of normalised ``queries``: one pass over the gallery chunks,
    each searched with FAISS (GPU 0 with ``gpu``), the per-chunk lists merged in the documented order."""
    k = min(k, reader.n)
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_r = np.full((len(queries), k), -1, dtype=np.int64)
    if gpu and (getattr(faiss, "StandardGpuResources", None) is None or faiss.get_num_gpus() == 0):
        raise ValueError("gpu=True but FAISS sees no GPU (faiss.get_num_gpus() == 0); the faiss-cpu wheel has no GPU "
                         "support: on a CUDA machine replace it (pip uninstall faiss-cpu && pip install "
                         "faiss-gpu-cu12; docs/retrieval.md), or drop gpu=True / --gpu")
    res = faiss.StandardGpuResources() if gpu else None
    for start, block in reader.chunks():
        kk = min(k, len(block))
        for q0 in range(0, len(queries), query_batch):
            q = np.ascontiguousarray(queries[q0:q0 + query_batch], dtype=np.float32)
            if gpu:
                d, i = faiss.knn_gpu(res, q, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
            else:
                d, i = faiss.knn(q, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
            i = np.where(i < 0, -1, i + start)
            s, r = sort_lists(np.concatenate([best_s[q0:q0 + len(q)], d], 1),
                              np.concatenate([best_r[q0:q0 + len(q)], i], 1))
            best_s[q0:q0 + len(q)], best_r[q0:q0 + len(q)] = s[:, :k], r[:, :k]
    return best_s, best_r


def rows_ahead(queries: np.ndarray, reader: GalleryReader, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each query i, how many gallery rows rank ahead of row ``rows[i]`` scoring ``scores[i]``: a higher
    score, or an equal score and a lower row. One pass over the gallery for all queries."""
    ahead = np.zeros(len(queries), dtype=np.int64)
    for start, block in reader.chunks():
        s = queries @ block.T
        above = (s > scores[:, None]).sum(1)
        index = start + np.arange(len(block))
        tied_before = ((s == scores[:, None]) & (index[None, :] < rows[:, None])).sum(1)
        ahead += above + tied_before
    return ahead


def _default_nlist(n: int) -> int:
    # ~sqrt(n) lists; FAISS's k-means wants >= 39 training points per centroid
    return max(1, min(int(round(np.sqrt(n))), n // 39))


@dataclass
class CandidateIndex:
    index: faiss.IndexIVFScalarQuantizer
    centroids: np.ndarray  # (nlist, dim) float32
    radii: np.ndarray  # (nlist,) max distance of a list's rows to its centroid; -inf for an empty list
    half_step: np.ndarray  # (dim,) the largest decoding error of an 8-bit code, per dimension


def build_candidate_index(reader: GalleryReader, nlist: int | None = None, train_rows: int | None = None,
                          seed: int = 0) -> CandidateIndex:
    """An IVF index with 8-bit codes over the gallery, built chunk by chunk (see the module docstring)."""
    n, dim = reader.n, reader.dim
    nlist = nlist or _default_nlist(n)
    if not 1 <= nlist <= n:
        raise ValueError(f"candidate index: nlist must lie in [1, {n}] (gallery rows), got {nlist}")
    # code ranges over every row (so no code is clipped and the error bound holds), and a strided sample
    lo = np.full(dim, np.inf, dtype=np.float32)
    hi = np.full(dim, -np.inf, dtype=np.float32)
    stride = max(1, n // (train_rows or min(n, 64 * nlist)))
    sample = []
    for start, block in reader.chunks():
        lo, hi = np.minimum(lo, block.min(0)), np.maximum(hi, block.max(0))
        sample.append(block[(-start) % stride::stride])
    sample = np.ascontiguousarray(np.concatenate(sample))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT, False)  # by_residual=False: codes of x
    index.cp.seed = seed
    index.train(sample)
    del sample
    span = np.maximum(hi - lo, 1e-6).astype(np.float32) * np.float32(1 + 1e-6)
    trained = np.concatenate([lo - span * np.float32(1e-6), span]).astype(np.float32)
    faiss.copy_array_to_vector(trained, index.sq.trained)
    centroids = quantizer.reconstruct_n(0, nlist)
    radii = np.full(nlist, -np.inf)
    for start, block in reader.chunks():
        _, assign = quantizer.search(block, 1)
        assign = assign[:, 0]
        dist = row_norms(block - centroids[assign])
        np.maximum.at(radii, assign, dist)
        ids = np.arange(start, start + len(block), dtype=np.int64)  # held here: FAISS keeps only a raw pointer
        add_preassigned(index, block, np.ascontiguousarray(assign), ids=ids)
    return CandidateIndex(index, centroids, radii, span / 510.0)  # 8 bits: 255 steps, error <= step / 2


def certified_search(cindex: CandidateIndex, queries: np.ndarray, reader: GalleryReader, k: int, k_prime: int,
                     nprobe: int, query_batch: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k_prime`` candidates per normalised query, re-ranked exactly: (exact scores, compact rows,
    certified). ``certified[i]`` means every gallery row scoring at least query i's k-th best exact score
    is in its list (the module docstring's certificate)."""
    nlist = len(cindex.centroids)
    nprobe, k_prime = min(nprobe, nlist), min(k_prime, reader.n)
    cindex.index.nprobe = nprobe
    scores = np.empty((len(queries), k_prime), dtype=np.float32)
    rows = np.empty((len(queries), k_prime), dtype=np.int64)
    certified = np.zeros(len(queries), dtype=bool)
    for q0 in range(0, len(queries), query_batch):
        q = np.ascontiguousarray(queries[q0:q0 + query_batch], dtype=np.float32)
        coarse = q @ cindex.centroids.T
        visited = np.argsort(-coarse, axis=1, kind="stable")[:, :nprobe]
        approx, cand = search_preassigned(cindex.index, q, k_prime, visited)
        # bound on every row that was not returned: unvisited lists, then the rest of the visited ones
        reach = coarse + row_norms(q)[:, None] * cindex.radii[None, :]
        np.put_along_axis(reach, visited, -np.inf, 1)
        bound = reach.max(1)
        full = cand[:, -1] >= 0
        eps = np.abs(q) @ cindex.half_step
        bound = np.maximum(bound, np.where(full, approx[:, -1] + eps, -np.inf)) + _SLACK
        # exact fp32 re-rank of the candidates
        safe = np.where(cand < 0, 0, cand)
        exact = np.einsum("qd,qkd->qk", q, reader.fetch(safe))
        exact = np.where(cand < 0, -np.inf, exact).astype(np.float32)
        exact, cand = sort_lists(exact, cand)
        kth = exact[:, min(k, k_prime) - 1]
        certified[q0:q0 + len(q)] = (kth > bound) & (cand[:, min(k, k_prime) - 1] >= 0)
        scores[q0:q0 + len(q)], rows[q0:q0 + len(q)] = exact, cand
    return scores, rows, certified
