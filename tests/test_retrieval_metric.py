"""Retrieval Recall@K: FAISS path vs dense reference, ties, validation, CLI and the mmengine metric."""

import json
import re

import faiss
import numpy as np
import pytest
import torch

from xmodal.cli.retrieval import main as retrieval_main
from xmodal.evaluation.retrieval import (
    RetrievalMetric,
    build_index,
    dense_recall_at_k,
    image_text_recalls,
    l2_normalise,
    recall_at_k,
    search,
)

BOTH = pytest.mark.parametrize("fn", [recall_at_k, dense_recall_at_k], ids=["faiss", "dense"])


def _recalls(result: dict, ks) -> list[float]:
    return [result[f"recall@{k}"] for k in ks]


def _tiny():
    """3 queries, 4 gallery rows in 2-D; orders worked out by hand in test_hand_computed."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    gallery = np.array([[1, 0], [c, s], [0, 1], [-1, 0]], dtype=np.float32)
    queries = np.array([[2, 0], [0, 1], [-1, 0.1]], dtype=np.float32)  # norms differ: cosine, not dot
    positives = [{1, 2}, {3}, {3, 0}]
    return queries, gallery, positives


@BOTH
def test_hand_computed(fn):
    # q0 ranks 0, 1, 2, 3: first positive (1) at rank 1.  q1 scores 0, .5, 1, 0 (-0.0 for row 3): order 2, 1,
    # then the tie 0 / 3 resolved by row, so positive 3 is at rank 3.  q2 ranks 3 first: a hit at once.
    queries, gallery, positives = _tiny()
    result = fn(queries, gallery, positives, ks=(1, 2, 3, 4))
    assert _recalls(result, (1, 2, 3, 4)) == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0])
    assert (result["num_queries"], result["num_gallery"], result["skipped_queries"]) == (3, 4, 0)
    # k beyond the gallery: everything is retrieved
    assert fn(queries, gallery, positives, ks=(10,))["recall@10"] == 1.0


def test_faiss_matches_dense_on_random_data():
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((3000, 32)).astype(np.float32)
    first = rng.integers(0, 3000, 400)
    queries = gallery[first] + 2.5 * rng.standard_normal((400, 32)).astype(np.float32)
    positives = [{int(p), int(p + 1) % 3000} if i % 2 else {int(p)} for i, p in enumerate(first)]
    ks = (1, 5, 10, 50)
    fast = recall_at_k(queries, gallery, positives, ks, batch_size=64, return_hits=True)
    dense = dense_recall_at_k(queries, gallery, positives, ks, chunk_elements=3000 * 37, return_hits=True)
    assert 0.05 < fast["recall@1"] < 0.9  # not a trivial set

    # Near-ties (best positive within float32 rounding of the k-th score) may order differently in
    # FAISS's and torch's matmuls: compare every other (query, k) exactly, and check these are rare.
    scores = l2_normalise(queries).astype(np.float64) @ l2_normalise(gallery).astype(np.float64).T
    best = np.array([scores[i, sorted(p)].max() for i, p in enumerate(positives)])
    kth = -np.sort(-scores, axis=1)[:, [k - 1 for k in ks]]
    decided = np.abs(kth - best[:, None]) > 1e-5
    assert decided.mean() > 0.95
    assert (fast["hits"][decided] == dense["hits"][decided]).all()
    assert (fast["hits"] == dense["hits"]).all()  # for this seed there is no near-tie at all
    assert np.array_equal(fast["query_rows"], np.arange(400))


@pytest.mark.parametrize("num_queries", [1, 25], ids=["faiss-sequential", "faiss-blas"])  # FAISS switches at 20
def test_ties_resolved_by_lowest_row(num_queries):
    """Exactly equal scores: rows 1, 3 and 4 are the same vector; the lowest tied rows fill the top k and a
    tied neighbour is a hit only when it is itself a positive."""
    eye = np.eye(4, dtype=np.float32)
    gallery = eye[[1, 0, 2, 0, 0, 3]]
    queries = np.repeat(eye[[0]], num_queries, axis=0)  # scores 1 for rows 1, 3, 4; 0 for rows 0, 2, 5
    ks = (1, 2, 3, 4)
    cases = {  # positives -> recalls at ks
        frozenset({4}): [0, 0, 1, 1],  # behind tied rows 1 and 3, which are not positives
        frozenset({3, 4}): [0, 1, 1, 1],  # best positive: row 3, behind row 1 only
        frozenset({1}): [1, 1, 1, 1],
        frozenset({1, 3, 4}): [1, 1, 1, 1],  # any tied neighbour is a positive: a hit whatever the order
        frozenset({5}): [0, 0, 0, 0],  # score 0, tied with rows 0 and 2, which come first
        frozenset({0}): [0, 0, 0, 1],
    }
    for positives, expected in cases.items():
        for fn in (recall_at_k, dense_recall_at_k):
            result = fn(queries, gallery, [set(positives)] * num_queries, ks)
            assert _recalls(result, ks) == expected, (fn.__name__, sorted(positives))
    scores, rows = search(build_index(gallery), queries, 3)  # FAISS itself lists them as 4, 3, 1
    assert (rows == [1, 3, 4]).all() and (scores == 1).all()


@pytest.mark.parametrize("num_queries", [1, 30])
def test_ties_across_faiss_blocks(num_queries):
    """40 copies of the best row scattered over 5000 rows (FAISS scans in blocks of 1024) and 4960 rows tied
    at score 0: the rank of a positive among tied rows is its position among them, in both implementations."""
    rng = np.random.default_rng(1)
    gallery = np.zeros((5000, 4), dtype=np.float32)
    gallery[:, 2] = 1
    tied = np.sort(rng.choice(5000, 40, replace=False))
    gallery[tied] = [1, 0, 0, 0]
    zero_tied = np.setdiff1d(np.arange(5000), tied)
    queries = np.tile(np.float32([[1, 0, 0, 0]]), (num_queries, 1))
    ks = (1, 3, 10)
    for positive, expected in ((tied[0], [1, 1, 1]), (tied[2], [0, 1, 1]), (tied[9], [0, 0, 1]),
                               (tied[10], [0, 0, 0]), (tied[39], [0, 0, 0]), (zero_tied[0], [0, 0, 0])):
        for fn in (recall_at_k, dense_recall_at_k):
            assert _recalls(fn(queries, gallery, [{int(positive)}] * num_queries, ks), ks) == expected
    # rank 40 + i for the i-th row of the score-0 tie: visible with k = 41 / 42
    for fn in (recall_at_k, dense_recall_at_k):
        result = fn(queries, gallery, [{int(zero_tied[1])}] * num_queries, (41, 42))
        assert _recalls(result, (41, 42)) == [0, 1]


def test_ivf_and_hnsw_match_flat_on_an_easy_set():
    rng = np.random.default_rng(2)
    gallery = rng.standard_normal((400, 16)).astype(np.float32)
    first = rng.integers(0, 400, 150)
    queries = gallery[first] + 0.7 * rng.standard_normal((150, 16)).astype(np.float32)
    positives = [{int(p)} for p in first]
    ks = (1, 5, 10)
    flat = recall_at_k(queries, gallery, positives, ks, return_hits=True)
    assert flat["recall@1"] < 1.0
    ivf = recall_at_k(queries, gallery, positives, ks, index="ivf", nlist=8, nprobe=8, return_hits=True)
    hnsw = recall_at_k(queries, gallery, positives, ks, index="hnsw", hnsw_m=16, return_hits=True)
    assert (ivf["hits"] == flat["hits"]).all()  # nprobe = nlist visits every list: exhaustive
    assert _recalls(hnsw, ks) == _recalls(flat, ks)


def test_image_text_recalls_keys_and_mean():
    e = np.eye(8, dtype=np.float32)
    images = e[:3]
    # captions 0-1 of image 0, 2-3 of image 1, 4-5 of image 2; caption 5 looks more like image 0
    texts = np.stack([2 * e[0] + e[3], e[0] + e[4], e[1], e[1] + e[5], e[2] + 2 * e[6], e[0] + 0.2 * e[2]])
    text_to_image = np.array([0, 0, 1, 1, 2, 2])
    out = image_text_recalls(images, texts, text_to_image)
    ks = (1, 5, 10)
    assert set(out) == {f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in ks} | {"mean_recall"}
    # text -> image: caption 5 ranks image 0 (.98) above its image 2 (.20); the others find theirs first
    assert out["image_retrieval_recall@1"] == pytest.approx(5 / 6)
    # image -> text: image 0 ranks caption 5 (.98) above its own 0 (.89) and 1 (.71); images 1 and 2 hit
    assert out["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert out["image_retrieval_recall@5"] == out["text_retrieval_recall@5"] == out["text_retrieval_recall@10"] == 1
    assert out["mean_recall"] == pytest.approx((5 / 6 + 2 / 3 + 4) / 6)
    with pytest.raises(ValueError, match=r"text_to_image\[4\]: image index 3 out of range \[0, 2\]"):
        image_text_recalls(images, texts, [0, 0, 1, 1, 3, 2])


@BOTH
@pytest.mark.parametrize("mutate, message", [
    (lambda q, g, p: (q[:, :1], g, p), r"queries has dim 1 but gallery has dim 2"),
    (lambda q, g, p: (np.where(np.arange(3)[:, None] == 2, np.nan, q), g, p), r"queries row 2: NaN or Inf"),
    (lambda q, g, p: (q, np.where(np.arange(4)[:, None] == 1, np.inf, g), p), r"gallery row 1: NaN or Inf"),
    (lambda q, g, p: (q * (np.arange(3)[:, None] != 1), g, p), r"queries row 1: zero-norm embedding"),
    (lambda q, g, p: (q, g * (np.arange(4)[:, None] != 3), p), r"gallery row 3: zero-norm embedding"),
    (lambda q, g, p: (q, g, [{1}, {9}, {0}]), r"positives\[1\]: gallery index 9 out of range \[0, 3\]"),
    (lambda q, g, p: (q, g, [{1}, {-1}, {0}]), r"positives\[1\]: gallery index -1 out of range"),
    (lambda q, g, p: (q, g, [{1}, {1.5}, {0}]), r"positives\[1\]: gallery index 1.5 is not an integer"),
    (lambda q, g, p: (q, g, p[:2]), r"positives: 2 entries for 3 queries"),
    (lambda q, g, p: (q, g, [set(), set(), set()]), r"positives: no pairs"),
    (lambda q, g, p: (q, g, [{1}, set(), {0}]), r"queries row 1: no positive in positives"),
    (lambda q, g, p: (q[:0], g, []), r"queries: no rows"),
    (lambda q, g, p: (q[0], g, p), r"queries: expected a 2-D array"),
])
def test_bad_input_errors(fn, mutate, message):
    queries, gallery, positives = mutate(*_tiny())
    with pytest.raises(ValueError, match=message):
        fn(queries, gallery, positives)


def test_bad_arguments():
    queries, gallery, positives = _tiny()
    with pytest.raises(ValueError, match="ks: every k must be >= 1, got 0"):
        recall_at_k(queries, gallery, positives, ks=(0, 5))
    with pytest.raises(ValueError, match="kind must be 'flat', 'ivf' or 'hnsw'"):
        recall_at_k(queries, gallery, positives, index="lsh")
    with pytest.raises(ValueError, match=r"custom Q row 0: NaN"):
        recall_at_k(queries * np.nan, gallery, positives, names=("custom Q", "custom G"))
    if faiss.get_num_gpus() == 0:
        with pytest.raises(ValueError, match="gpu=True but FAISS sees no GPU"):
            recall_at_k(queries, gallery, positives, gpu=True)
        with pytest.raises(ValueError, match="gpu=True but FAISS sees no GPU"):
            build_index(gallery, gpu=True)


@BOTH
def test_skip_invalid_counts(fn):
    queries, gallery, positives = _tiny()
    queries = np.vstack([queries, [[0, 0]], [[0.5, 0.5]], [[1, 1]]]).astype(np.float32)
    gallery = np.vstack([gallery, [[0, 0]]]).astype(np.float32)  # row 4: zero-norm
    # query 3: zero-norm; query 4: no positive; query 5: only positive is the dropped gallery row 4
    positives = positives + [{0}, set(), {4}]
    result = fn(queries, gallery, positives, ks=(1, 2, 3, 4), skip_invalid=True, return_hits=True)
    assert (result["skipped_queries"], result["skipped_gallery"]) == (3, 1)
    assert (result["num_queries"], result["num_gallery"]) == (3, 4)
    assert list(result["query_rows"]) == [0, 1, 2]
    assert _recalls(result, (1, 2, 3, 4)) == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0])  # as without the extras
    with pytest.raises(ValueError, match="queries row 3: zero-norm"):
        fn(queries, gallery, positives)
    with pytest.raises(ValueError, match="no query left to evaluate"):
        fn(queries[3:4], gallery, [{0}], skip_invalid=True)


# --- CLI --------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: messages read exactly "PAIRS.csv line 3: ..."
    queries, gallery, positives = _tiny()
    np.save("Q.npy", queries)
    np.save("G.npy", gallery)
    lines = ["query,gallery"] + [f"{q},{g}" for q, rows in enumerate(positives) for g in sorted(rows)]
    (tmp_path / "PAIRS.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def _cli(*extra: str) -> list[str]:
    return ["--queries", "Q.npy", "--gallery", "G.npy", "--pairs", "PAIRS.csv", *extra]


def test_cli_json_both_directions(cli_files, capsys):
    assert retrieval_main(_cli("--k", "1", "2", "3", "4", "--direction", "both", "--json", "out/r.json")) == 0
    assert "Recall@K" in capsys.readouterr().out
    result = json.loads((cli_files / "out" / "r.json").read_text())
    assert result["k"] == [1, 2, 3, 4] and result["num_pairs"] == 5
    assert _recalls(result["q2g"], (1, 2, 3, 4)) == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0])
    # g2q: gallery rows as queries, positives = queries paired with them (row 0 <- q2; 1 <- q0; 2 <- q0; 3 <- q1, q2)
    # row 0 ranks q0, q1, q2: first positive q2 at rank 2; row 1: q0 first; row 2: q1 first (positive q0 at 2);
    # row 3: q2 first.
    assert _recalls(result["g2q"], (1, 2, 3)) == pytest.approx([2 / 4, 2 / 4, 1.0])
    assert result["g2q"]["num_queries"] == 4 and result["g2q"]["skipped_queries"] == 0
    assert not [p.name for p in (cli_files / "out").iterdir() if p.name != "r.json"]  # no temp file left


@pytest.mark.parametrize("pairs, message", [
    ("query,gallery\n0,1\n1,120\n", r"^error: PAIRS.csv line 3: gallery index 120 out of range \[0, 3\]$"),
    ("query,gallery\n0,1\n\n7,0\n", r"PAIRS.csv line 4: query index 7 out of range \[0, 2\]"),
    ("query,gallery\n0,x\n", r"PAIRS.csv line 2: gallery index 'x' is not an integer"),
    ("query,gallery\n0,1,2\n", r"PAIRS.csv line 2: expected 2 fields"),
    ("q,g\n0,1\n", r"PAIRS.csv line 1: expected the header 'query,gallery'"),
    ("query,gallery\n", r"PAIRS.csv: no pairs"),
    ("query,gallery\n0,1\n2,3\n", r"q2g: Q.npy row 1: no positive in PAIRS.csv"),
])
def test_cli_pair_errors(cli_files, pairs, message, capsys):
    (cli_files / "PAIRS.csv").write_text(pairs)
    with pytest.raises(SystemExit) as exc:
        retrieval_main(_cli())
    assert exc.value.code == 2  # cli_errors: one "error: ..." line on stderr, no traceback
    assert re.search(message, capsys.readouterr().err.strip())


def _fails(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        retrieval_main(argv)
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_cli_embedding_errors_and_skip(cli_files, capsys):
    queries, _, _ = _tiny()
    np.save("Q.npy", np.vstack([queries, [[np.nan, 0]]]))
    _fails(_cli(), r"Q.npy row 3: NaN or Inf", capsys)
    np.save("Q.npy", queries[:, :1])
    _fails(_cli(), r"Q.npy has dim 1 but G.npy has dim 2", capsys)
    np.save("Q.npy", queries[0])
    _fails(_cli(), r"Q.npy: expected a 2-D array", capsys)
    _fails(["--queries", "missing.npy", "--gallery", "G.npy", "--pairs", "PAIRS.csv"], r"missing.npy: file not found",
           capsys)
    # a gallery row without pair: a distractor for q2g, and left out (counted) as a g2q query
    np.save("Q.npy", queries)
    if faiss.get_num_gpus() == 0:
        _fails(_cli("--gpu"), r"gpu=True but FAISS sees no GPU", capsys)
    np.save("G.npy", np.vstack([_tiny()[1], [[0, -1]]]).astype(np.float32))
    assert retrieval_main(_cli("--direction", "both", "--json", "r.json")) == 0
    result = json.loads((cli_files / "r.json").read_text())
    assert result["g2q"]["skipped_no_positive"] == 1 and result["q2g"]["num_gallery"] == 5
    assert "g2q: 1 gallery row(s) have no positive in PAIRS.csv" in capsys.readouterr().err


# --- mmengine metric ----------------------------------------------------------------------------------------------


def _records():
    rng = np.random.default_rng(3)
    images = rng.standard_normal((4, 8)).astype(np.float32)
    text_image = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])
    texts = images[text_image] + 1.2 * rng.standard_normal((9, 8)).astype(np.float32)
    records = [dict(image_embedding=torch.from_numpy(images[i]), image_index=10 + int(i),
                    text_embedding=torch.from_numpy(texts[t]), text_index=100 + t)
               for t, i in enumerate(text_image)]
    return images, texts, text_image, records


def test_retrieval_metric_dedupes_records_from_ranks():
    from xmodal.registry import METRICS

    images, texts, text_image, records = _records()
    expected = image_text_recalls(images, texts, text_image, (1, 2, 5))
    metric = METRICS.build(dict(type="RetrievalMetric", ks=(1, 2, 5)))
    assert isinstance(metric, RetrievalMetric)
    # two "ranks" interleaved as mmengine gathers them, plus a sampler's padded duplicates and text-free records
    rank0, rank1 = records[0::2], records[1::2]
    metric.process({}, rank0[:3])
    metric.process({}, rank1 + rank0[3:] + records[:2] + [dict(image_embedding=images[3], image_index=13)])
    out = metric.evaluate(len(metric.results))
    assert out == pytest.approx(expected)
    assert 0 < out["mean_recall"] < 1


def test_retrieval_metric_errors():
    images, _, _, records = _records()
    metric = RetrievalMetric()
    with pytest.raises(ValueError, match="text_index 102 recorded with image_index 11 and 12"):
        metric.process({}, records + [dict(records[2], image_index=12)])
        metric.compute_metrics(metric.results)
    metric.results.clear()
    with pytest.raises(ValueError, match="text_index 106 belongs to image_index 13, which has no image_embedding"):
        metric.process({}, [dict(r, image_embedding=None) if r["image_index"] == 13 else r for r in records])
        metric.compute_metrics(metric.results)
    metric.results.clear()
    zero = [dict(r, image_embedding=torch.zeros(8)) if r["image_index"] == 12 else r for r in records]
    metric.process({}, zero)
    with pytest.raises(ValueError, match=r"image embeddings row 2 \(image_index 12\): zero-norm"):
        metric.compute_metrics(metric.results)
    skipping = RetrievalMetric(skip_invalid=True)
    skipping.process({}, zero)
    out = skipping.compute_metrics(skipping.results)
    assert out["text_retrieval_skipped_queries"] == 1 and out["image_retrieval_skipped_gallery"] == 1
    assert out["image_retrieval_skipped_queries"] == 2  # the dropped image's two captions
    with pytest.raises(ValueError, match="has neither image_embedding nor text_embedding"):
        metric.process({}, [dict(image_index=1)])
