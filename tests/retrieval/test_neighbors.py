"""FAISS neighbours: the flat index is exact, the IVF-PQ index says how approximate it is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink.cli import main
from relink.embeddings import EmbeddingSet, save
from relink.retrieval.neighbors import build_index, exact_top_k, ivfpq_params, neighbor_table, recall_vs_flat, search
from relink.tables import read_table
from helpers.brute import unit


def _clustered(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and reports around 40 shared centres: neighbourhoods an inverted file can find."""
    rng = np.random.default_rng(seed)
    centre = unit(rng, 40, d)[rng.integers(0, 40, n)]
    image = centre + 0.4 * unit(rng, n, d)
    text = image + 0.3 * unit(rng, n, d)
    return (image / np.linalg.norm(image, axis=1, keepdims=True)).astype(np.float32), \
        (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)


def _brute(q: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    s = q.astype(np.float64) @ c.astype(np.float64).T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def test_parameters_follow_the_size():
    p = ivfpq_params(1_000_000, 512)
    assert p == {"nlist": 4000, "m": 64, "nbits": 8, "nprobe": 500}
    small = ivfpq_params(3000, 64)
    assert small["nlist"] == 3000 // 39 and small["m"] == 8 and 64 % small["m"] == 0
    assert 2 ** small["nbits"] * 39 <= 3000  # every codeword has its 39 training points
    assert ivfpq_params(5000, 100)["m"] == 10  # a divisor of d


def test_flat_is_exact_and_the_exact_helper_agrees():
    image, text = _clustered(1500, 32)
    index, params = build_index(text, "flat")
    _, found = search(index, image, 5)
    expected = _brute(image, text, 5)
    assert params == {"index": "flat"}
    assert (found[:, 0] == expected[:, 0]).all() and (np.sort(found, 1) == np.sort(expected, 1)).mean() > 0.999
    np.testing.assert_array_equal(exact_top_k(image[:50], text, 5, batch=128), expected[:50])


def test_ivfpq_recall_is_measured_against_the_exact_search():
    image, text = _clustered(4000, 64)
    index, params = build_index(text, "ivf,pq", seed=3)
    assert params["index"] == "ivf,pq" and params["trained_on"] == 4000
    k = 10
    report = recall_vs_flat(index, image, text, k, sample=500, seed=1)
    assert report["sample_queries"] == 500 and report["k"] == k
    # independently: the approximate listing against numpy's exact top-k over every query
    _, found = search(index, image, k)
    exact = _brute(image, text, k)
    overall = np.mean([len(np.intersect1d(a, e)) for a, e in zip(found, exact)]) / k
    assert 0.3 < report["recall_at_k_vs_flat"] < 1.0  # lossy codes: never exact, far better than chance (k/M)
    assert abs(report["recall_at_k_vs_flat"] - overall) < 0.05  # the sample estimates the whole
    wide, _ = build_index(text, "ivf,pq", seed=3, nprobe=10_000)  # every list visited: only the codes lose recall
    assert recall_vs_flat(wide, image, text, k, sample=500, seed=1)["recall_at_k_vs_flat"] >= report["recall_at_k_vs_flat"]


def test_missing_candidates_of_an_approximate_search_are_left_out():
    table = neighbor_table(np.array(["a", "b", "c"]), np.array(["p", "p", "q"]),
                           np.array([[0.9, 0.5], [0.8, -3.4e38], [0.7, 0.6]], np.float32),
                           np.array([[0, 2], [1, -1], [2, 0]]))
    assert list(table["rank"]) == [1, 2, 1, 1, 2] and list(table.candidate_pair_id) == ["a", "c", "b", "c", "a"]


def test_neighbors_cli_with_an_ivfpq_index(tmp_path, capsys):
    image, text = _clustered(3000, 64, seed=2)
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(3000)], "patient_id": [f"p{i // 3}" for i in range(3000)]})
    save(EmbeddingSet.from_arrays(rows, image, text), tmp_path / "emb")
    out = tmp_path / "nn.parquet"
    assert main(["neighbors", "--embeddings", str(tmp_path / "emb"), "--k", "5", "--index", "ivf,pq",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    frame, prov = read_table(out)
    index = prov["index"]
    assert index["index"] == "ivf,pq" and index["nlist"] == 3000 // 39 and index["sample_queries"] == 1000
    assert f"recall@5 vs exact {index['recall_at_k_vs_flat']:.3f}" in printed
    assert 0 < index["recall_at_k_vs_flat"] < 1
    # a low recall is flagged, a high one is not
    assert ("warning: the approximate index found" in captured.err) == (index["recall_at_k_vs_flat"] < 0.9)
    assert main(["neighbors", "--embeddings", str(tmp_path / "emb"), "--k", "5", "--out", str(tmp_path / "f.csv")]) == 0
    flat, prov = read_table(tmp_path / "f.csv")
    assert prov["index"] == {"index": "flat"} and len(flat) == 3000 * 5
    expected = _brute(image, text, 5)
    got = flat.candidate_pair_id.str[1:].astype(int).to_numpy().reshape(3000, 5)
    assert (np.sort(got, 1) == np.sort(expected, 1)).mean() > 0.999


@pytest.mark.parametrize("argv, message", [(["--index", "hnsw"], "invalid choice"), (["--nprobe", "0"], "--nprobe")])
def test_neighbors_bad_options(tmp_path, capsys, argv, message):
    rows = pd.DataFrame({"pair_id": ["a", "b"], "patient_id": ["p", "q"]})
    rng = np.random.default_rng(0)
    save(EmbeddingSet.from_arrays(rows, unit(rng, 2, 4), unit(rng, 2, 4)), tmp_path / "emb")
    assert main(["neighbors", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "n.csv"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_poor_approximate_index_is_flagged(tmp_path, capsys):
    rng = np.random.default_rng(5)  # structureless vectors: product quantisation keeps few exact neighbours
    image, text = rng.standard_normal((400, 64)).astype(np.float32), rng.standard_normal((400, 64)).astype(np.float32)
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(400)], "patient_id": [f"p{i}" for i in range(400)]})
    save(EmbeddingSet.from_arrays(rows, image, text), tmp_path / "emb")
    assert main(["neighbors", "--embeddings", str(tmp_path / "emb"), "--k", "5", "--index", "ivf,pq",
                 "--out", str(tmp_path / "nn.csv")]) == 0
    _, prov = read_table(tmp_path / "nn.csv")
    assert prov["index"]["recall_at_k_vs_flat"] < 0.9
    assert "use --index flat (exact)" in capsys.readouterr().err
