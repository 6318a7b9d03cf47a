"""xmodal-retrieval --direction both on the usual input (a gallery larger than the query set, gallery rows
without a positive) and k at or above the gallery size."""

from __future__ import annotations

import json

import numpy as np

from xmodal.cli.retrieval import main


def _recall(queries: np.ndarray, gallery: np.ndarray, positives: list[set[int]], k: int) -> float:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    order = np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]
    return float(np.mean([bool(set(row) & pos) for row, pos in zip(order, positives)]))


def test_both_directions_skip_unpaired_gallery_rows_and_flag_capped_k(tmp_path, capsys):
    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "q.npy", queries)
    np.save(tmp_path / "g.npy", gallery)
    (tmp_path / "pairs.csv").write_text("query,gallery\n0,0\n1,2\n2,4\n0,5\n")  # gallery rows 1 and 3: no pair
    out = tmp_path / "r.json"
    assert main(["--queries", str(tmp_path / "q.npy"), "--gallery", str(tmp_path / "g.npy"), "--pairs",
                 str(tmp_path / "pairs.csv"), "--direction", "both", "--k", "1", "2", "5", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    results = json.loads(out.read_text())
    q2g, g2q = results["q2g"], results["g2q"]
    assert (q2g["num_queries"], q2g["num_gallery"], q2g["skipped_no_positive"]) == (3, 6, 0)
    assert (g2q["num_queries"], g2q["num_gallery"], g2q["skipped_no_positive"]) == (4, 3, 2)
    assert q2g["capped_k"] == [] and g2q["capped_k"] == [5]  # g2q searches the 3 queries
    rows = [0, 2, 4, 5]  # the paired gallery rows, as g2q queries
    g2q_positives = [{0}, {1}, {2}, {0}]
    for k in (1, 2):
        assert abs(g2q[f"recall@{k}"] - _recall(gallery[rows], queries, g2q_positives, k)) < 1e-9
        assert abs(q2g[f"recall@{k}"] - _recall(queries, gallery, [{0, 5}, {2}, {4}], k)) < 1e-9
    assert "g2q: 2 gallery row(s) have no positive" in captured.err
    assert "warning: g2q: k = 5 >= the gallery size 3" in captured.err and "capped" in captured.out
