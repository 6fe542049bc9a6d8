"""Top-k candidates per query with FAISS, for inspecting linkage at scale.

Contract. ``queries`` (q, d) and ``candidates`` (m, d) float arrays; both are
L2-normalised here, so the inner product of ``faiss.IndexFlatIP`` is the
cosine score the audit ranks by. :func:`top_k` returns ``(scores, index)``,
each (q, k), best first; :func:`neighbor_table` turns them into the tidy
listing of ``relink neighbors``: one row per (query, rank) with the query's
and the candidate's ``pair_id``, the score, whether the candidate is the
query's own pair (``is_true``) and whether it belongs to the same patient
(``same_patient``). No report text is included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..embeddings import l2_normalise

COLUMNS = ("query_pair_id", "rank", "candidate_pair_id", "score", "is_true", "same_patient")


def top_k(queries: np.ndarray, candidates: np.ndarray, k: int, batch: int = 8192, progress: bool = False):
    """Exact inner-product top-k of normalised vectors; (scores float32, index int64), each (q, k)."""
    import faiss
    from tqdm.auto import tqdm

    q = np.ascontiguousarray(l2_normalise(queries))
    c = np.ascontiguousarray(l2_normalise(candidates))
    k = min(int(k), c.shape[0])
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    scores = np.empty((q.shape[0], k), dtype=np.float32)
    found = np.empty((q.shape[0], k), dtype=np.int64)
    for a in tqdm(range(0, q.shape[0], batch), desc="neighbors", unit="batch", disable=None if progress else True):
        scores[a:a + batch], found[a:a + batch] = index.search(q[a:a + batch], k)
    return scores, found


def neighbor_table(pair_ids, patient_ids, scores: np.ndarray, found: np.ndarray) -> pd.DataFrame:
    """Tidy listing (see module docstring); query i's own pair is candidate i."""
    pair_ids = np.asarray(pair_ids)
    patient_ids = np.asarray(patient_ids)
    q, k = found.shape
    query = np.repeat(np.arange(q), k)
    cand = found.reshape(-1)
    return pd.DataFrame({
        "query_pair_id": pair_ids[query],
        "rank": np.tile(np.arange(1, k + 1), q),
        "candidate_pair_id": pair_ids[cand],
        "score": scores.reshape(-1),
        "is_true": cand == query,
        "same_patient": patient_ids[cand] == patient_ids[query],
    })
