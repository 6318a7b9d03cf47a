"""Search past one exact scan (xmodal.evaluation.rerank): the chunked exact search and the IVF + exact re-rank
give exact search's hits, from arrays and memory-mapped .npy galleries, ties included; with the fallback off
the difference from exact search is measured and printed."""

import numpy as np
import pytest

from xmodal.cli.retrieval import main as retrieval_main
from xmodal.evaluation.rerank import GalleryReader, build_candidate_index, certified_search, l2_normalise
from xmodal.evaluation.retrieval import image_text_recalls, recall_at_k_pairs, rerank_summary

KS = (1, 5, 10)


def _data(n=4000, nq=300, dim=32, clustered=True, seed=0):
    rng = np.random.default_rng(seed)
    if clustered:  # 80 clusters: structure an index can use
        centres = rng.standard_normal((80, dim))
        gallery = centres[rng.integers(0, 80, n)] + 0.5 * rng.standard_normal((n, dim))
    else:  # isotropic: nearest neighbours spread over every IVF list
        gallery = rng.standard_normal((n, dim))
    gallery = gallery.astype(np.float32)
    positive = rng.integers(0, n, nq)
    noise = (0.4 if clustered else 2.0) * np.linalg.norm(gallery[positive], axis=1, keepdims=True) / np.sqrt(dim)
    queries = (gallery[positive] + noise * rng.standard_normal((nq, dim))).astype(np.float32)
    return queries, gallery, positive


def _hits(queries, gallery, positive, **kw):
    return recall_at_k_pairs(queries, gallery, np.arange(len(queries)), positive, KS, return_hits=True, **kw)


@pytest.mark.parametrize("clustered", [True, False])
@pytest.mark.parametrize("index", ["chunked", "rerank"])
def test_same_hits_as_exact_search(clustered, index, tmp_path):
    queries, gallery, positive = _data(clustered=clustered)
    np.save(tmp_path / "g.npy", gallery)
    exact = _hits(queries, gallery, positive)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    other = _hits(queries, mapped, positive, index=index, nlist=40, nprobe=2)
    np.testing.assert_array_equal(other["hits"], exact["hits"])
    assert [other[f"recall@{k}"] for k in KS] == [exact[f"recall@{k}"] for k in KS]
    if index == "rerank":  # every query is accounted for: certified, or searched exhaustively
        assert other["rerank_certified"] + other["rerank_exact_fallback"] == len(queries)
        assert "identical to exact search" in rerank_summary(other, KS)


def test_full_scan_of_the_codes_certifies():
    # visiting every list makes the candidates the 8-bit scan's best: the code error bound certifies them
    queries, gallery, positive = _data(clustered=False)
    result = _hits(queries, gallery, positive, index="rerank", nlist=16, nprobe=16, k_prime=200)
    assert result["rerank_certified"] > 0.9 * len(queries)
    np.testing.assert_array_equal(result["hits"], _hits(queries, gallery, positive)["hits"])


def test_certificate_is_sound():
    # a certified list holds every row scoring at least its 10th exact score (checked against the full ranking)
    queries, gallery, _ = _data(clustered=True)
    q, g = l2_normalise(queries), l2_normalise(gallery)
    reader = GalleryReader(gallery, chunk_rows=1000)
    cindex = build_candidate_index(reader, nlist=40)
    scores, rows, certified = certified_search(cindex, q, reader, 10, 50, nprobe=40)
    assert certified.mean() > 0.9
    full = q @ g.T
    for i in np.flatnonzero(certified):
        kth = scores[i, 9]
        assert set(np.flatnonzero(full[i] >= kth + 1e-6)) <= set(rows[i].tolist())
        np.testing.assert_allclose(scores[i, :10], np.sort(full[i])[::-1][:10], atol=1e-5)


def test_ties_and_skipped_rows_follow_the_documented_order(tmp_path):
    # duplicated gallery rows score exactly alike: the lowest row wins, as in exact search; zero rows skipped
    queries, gallery, positive = _data(n=1000, nq=100)
    gallery = np.concatenate([gallery, gallery[:200], np.zeros((3, gallery.shape[1]), np.float32)])
    positive = np.where(np.arange(100) % 2 == 0, positive, 1000 + positive % 200)  # positives among the copies
    np.save(tmp_path / "g.npy", gallery)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    exact = _hits(queries, gallery, positive, skip_invalid=True)
    for index in ("chunked", "rerank"):
        other = _hits(queries, mapped, positive, index=index, skip_invalid=True, nlist=20, nprobe=1)
        np.testing.assert_array_equal(other["hits"], exact["hits"])
        assert other["skipped_gallery"] == 3


def test_difference_is_measured_and_printed_without_fallback():
    queries, gallery, positive = _data(clustered=False)
    exact = _hits(queries, gallery, positive)
    fast = _hits(queries, gallery, positive, index="rerank", nlist=40, nprobe=1, fallback="none", verify=10_000)
    assert fast["rerank_uncertified"] > 0 and fast["rerank_verified"] == fast["rerank_uncertified"]
    for j, k in enumerate(KS):  # every uncertified query was checked, so the count is the true difference
        assert fast[f"rerank_differ@{k}"] == int((fast["hits"][:, j] != exact["hits"][:, j]).sum())
    line = rerank_summary(fast, KS)
    assert "not certified" in line and "differ" in line


def test_image_text_recalls_and_cli_report_the_certificate(tmp_path, capsys):
    queries, gallery, _ = _data(n=600, nq=1200)
    positive = np.arange(1200) % 600  # two captions per image
    out = image_text_recalls(gallery, queries, positive, index="rerank", nlist=15, nprobe=2)
    flat = image_text_recalls(gallery, queries, positive)
    assert {k: v for k, v in out.items() if "rerank" not in k} == flat
    assert out["image_retrieval_rerank_queries"] == len(queries)
    np.save(tmp_path / "q.npy", queries)
    np.save(tmp_path / "g.npy", gallery)
    (tmp_path / "pairs.csv").write_text("query,gallery\n" + "".join(f"{i},{p}\n" for i, p in enumerate(positive)))
    args = ["--queries", str(tmp_path / "q.npy"), "--gallery", str(tmp_path / "g.npy"), "--pairs",
            str(tmp_path / "pairs.csv"), "--index", "rerank", "--nlist", "15"]
    assert retrieval_main(args) == 0
    assert "q2g: rerank:" in capsys.readouterr().err
    assert retrieval_main(args + ["--nprobe", "1", "--rerank-fallback", "none", "--verify", "50"]) == 0
    assert "q2g: rerank:" in capsys.readouterr().err


def test_gpu_without_a_gpu_build_is_a_clear_error():
    queries, gallery, positive = _data(n=200, nq=20)
    with pytest.raises(ValueError, match="faiss-gpu-cu12"):
        _hits(queries, gallery, positive, index="chunked", gpu=True)
