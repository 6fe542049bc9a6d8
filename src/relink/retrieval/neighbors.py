"""Top-k candidates per query with FAISS, for inspecting linkage at scale.

``queries`` and ``candidates`` are row sources (:class:`relink.embeddings.RowSource`,
unit rows) or arrays (normalised here), so the inner product is the cosine
the audit ranks by. :func:`search` gives ``(scores, index)``, each (q, k),
best first; :func:`neighbor_table` the listing of ``relink neighbors``: one
row per (query, rank), columns :data:`COLUMNS` (no report text).

Indexes: ``"flat"`` (default, exact ``IndexFlatIP``) and, only when asked,
``"ivf,pq"`` (``IndexIVFPQ``, for candidates whose floats do not fit in
memory), parameters from M and d (:func:`ivfpq_params`, following FAISS's
guide), trained on a seeded sample of at most 100,000 candidates.
Approximate: :func:`recall_vs_flat` measures it against the exact search,
and the listing's provenance says so. The audit itself is always exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import RelinkError
from ..embeddings import RowSource

COLUMNS = ("query_pair_id", "rank", "candidate_pair_id", "score", "is_true", "same_patient")
INDEXES = ("flat", "ivf,pq")
_TRAIN = 100_000  # candidates an IVF-PQ index is trained on, at most
_RECALL_SAMPLE = 1000  # queries the approximate index is checked on


def _source(rows) -> RowSource:
    return rows if isinstance(rows, RowSource) else RowSource(np.asarray(rows))


def ivfpq_params(m_candidates: int, d: int) -> dict[str, int]:
    """``nlist`` = 4 sqrt(M), at most M / 39; ``m`` = the largest divisor of d not above d / 8; ``nbits`` = 8
    where M allows 39 training points per codeword, fewer otherwise; ``nprobe`` = nlist / 8."""
    nlist = int(max(1, min(round(4 * np.sqrt(m_candidates)), m_candidates // 39)))
    m = max(k for k in range(1, max(1, d // 8) + 1) if d % k == 0)
    nbits = int(max(1, min(8, np.floor(np.log2(max(2, m_candidates // 39))))))
    return {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": max(1, nlist // 8)}


def build_index(candidates, kind: str = "flat", seed: int = 0, batch: int = 65536, nprobe: int | None = None):
    """A FAISS index of the candidate rows, and its parameters (for provenance)."""
    import faiss

    src = _source(candidates)
    m_cand, d = src.n, src.d
    if kind not in INDEXES:
        raise RelinkError(f"--index {kind!r}: choose one of {', '.join(INDEXES)}")
    if kind == "flat":
        index, params = faiss.IndexFlatIP(d), {"index": "flat"}
    else:
        if m_cand < 39:
            raise RelinkError(f"--index ivf,pq needs at least 39 candidates to train on, the set has {m_cand}; "
                              "use the flat index")
        p = ivfpq_params(m_cand, d)
        if nprobe is not None:
            p["nprobe"] = int(min(nprobe, p["nlist"]))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, p["nlist"], p["m"], p["nbits"], faiss.METRIC_INNER_PRODUCT)
        train = np.sort(np.random.default_rng(seed).choice(m_cand, size=min(m_cand, _TRAIN), replace=False))
        index.cp.seed = int(seed)  # the k-means of the coarse quantizer
        index.pq.cp.seed = int(seed)
        index.train(np.ascontiguousarray(src.read(train)))
        index.nprobe = p["nprobe"]
        params = {"index": "ivf,pq", **p, "trained_on": int(len(train))}
    for a in range(0, m_cand, batch):
        index.add(np.ascontiguousarray(src.read(slice(a, min(m_cand, a + batch)))))
    return index, params


def search(index, queries, k: int, batch: int = 8192, progress: bool = False):
    """Top-k of every query row: (scores float32, index int64), each (q, k), best first."""
    from tqdm.auto import tqdm

    src = _source(queries)
    k = min(int(k), index.ntotal)
    scores = np.empty((src.n, k), dtype=np.float32)
    found = np.empty((src.n, k), dtype=np.int64)
    for a in tqdm(range(0, src.n, batch), desc="neighbors", unit="batch", disable=None if progress else True):
        b = min(src.n, a + batch)
        scores[a:b], found[a:b] = index.search(np.ascontiguousarray(src.read(slice(a, b))), k)
    return scores, found


def exact_top_k(queries: np.ndarray, candidates, k: int, batch: int = 65536) -> np.ndarray:
    """Indices (q, k) of the exact top-k of a few query rows, the candidates streamed in blocks."""
    src = _source(candidates)
    k = min(int(k), src.n)
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for a in range(0, src.n, batch):
        b = min(src.n, a + batch)
        s = np.concatenate([best_s, queries @ src.read(slice(a, b)).T], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(a, b), (len(queries), b - a))], axis=1)
        keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i


def recall_vs_flat(index, queries, candidates, k: int, sample: int = _RECALL_SAMPLE, seed: int = 0) -> dict[str, Any]:
    """Recall@k = |approximate top-k & exact top-k| / k of ``index``, averaged over a seeded sample of queries."""
    src = _source(queries)
    pick = np.sort(np.random.default_rng(seed).choice(src.n, size=min(src.n, sample), replace=False))
    q = np.ascontiguousarray(src.read(pick))
    k = min(int(k), index.ntotal)
    _, approx = index.search(q, k)
    exact = exact_top_k(q, candidates, k)
    hits = [len(np.intersect1d(a, e)) for a, e in zip(approx, exact)]
    return {"recall_at_k_vs_flat": float(np.mean(hits) / k) if len(hits) else float("nan"), "k": k,
            "sample_queries": int(len(pick)), "seed": int(seed)}


def neighbor_table(pair_ids, patient_ids, scores: np.ndarray, found: np.ndarray) -> pd.DataFrame:
    """Tidy listing (see module docstring); query i's own pair is candidate i. Ranks an approximate index did
    not fill (FAISS marks them -1) are left out."""
    pair_ids = np.asarray(pair_ids)
    patient_ids = np.asarray(patient_ids)
    q, k = found.shape
    query = np.repeat(np.arange(q), k)
    cand = found.reshape(-1)
    rank = np.tile(np.arange(1, k + 1), q)
    ok = cand >= 0
    query, cand, rank, score = query[ok], cand[ok], rank[ok], scores.reshape(-1)[ok]
    return pd.DataFrame({
        "query_pair_id": pair_ids[query],
        "rank": rank,
        "candidate_pair_id": pair_ids[cand],
        "score": score,
        "is_true": cand == query,
        "same_patient": patient_ids[cand] == patient_ids[query],
    })
