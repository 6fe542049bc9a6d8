"""Monte Carlo pools: the slow, literal estimator that cross-checks the exact one.

For each query it draws ``n_pools`` pools exactly as :mod:`relink.retrieval.exact`
describes them — the truth set plus ``N - 1`` distractors drawn without
replacement from the query's available distractors — and scores them with the
query's own score row (recomputed here by a plain blocked product, not taken
from the counts), then ranks the truth in each pool:

* the truth score is S_ii (study level) or the best score among the patient's
  candidates (patient level); distractors are the other candidates (study) or
  the other patients' candidates (patient), restricted to the query's group
  when ``groups`` is given (hard negatives);
* a distractor outranks the truth when it scores above it by more than
  ``tie_tol``; it is tied with the truth when its embedding is identical to
  the truth's (the best-scoring one at the patient level). Ties are resolved
  as ``ties`` says (``"random"`` draws the truth's place among its tied pool
  members uniformly).

Result: per-query hit rates, shape (queries, len(draws), len(ks)), NaN where
the query has fewer than N - 1 distractors. Seeded by ``random_state``: the
same seed gives the same pools. The cost is about ``n_pools * D`` random keys
per query (D the available distractors), against one product row for the
exact estimator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .inputs import TIES


def _pool_hits(above, tie, draws, ks, n_pools, ties, rng) -> np.ndarray:
    """Hit rate at each K over ``n_pools`` random (draws)-subsets of one query's distractors."""
    d = len(above)
    if draws < d:
        keys = rng.random((n_pools, d))
        pick = np.argpartition(keys, draws - 1, axis=1)[:, :draws] if draws else np.zeros((n_pools, 0), np.int64)
    else:
        pick = np.broadcast_to(np.arange(d), (n_pools, d))
    a = above[pick].sum(axis=1)
    t = tie[pick].sum(axis=1)
    if ties == "random":
        outrank = a + np.floor(rng.random(n_pools) * (t + 1)).astype(np.int64)
    elif ties == "pessimistic":
        outrank = a + t
    else:
        outrank = a
    return (outrank[:, None] <= np.asarray(ks)[None, :] - 1).mean(axis=0)


def monte_carlo_recall(
    image: np.ndarray,
    text: np.ndarray,
    patient: np.ndarray,
    draws: Sequence[int],
    ks: Sequence[int],
    n_pools: int = 100,
    direction: str = "image_to_report",
    level: str = "study",
    groups: np.ndarray | None = None,
    ties: str = "random",
    tie_tol: float = 1e-6,
    random_state=0,
    queries: np.ndarray | None = None,
    device=None,
    block_rows: int = 256,
) -> np.ndarray:
    """Per-query Monte Carlo Recall@K, shape (len(queries), len(draws), len(ks)); see module docstring."""
    import torch

    from .engine import pick_device

    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    n = image.shape[0]
    queries = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    dev = pick_device(device)
    q_side, c_side = (image, text) if direction == "image_to_report" else (text, image)
    cand = torch.as_tensor(np.ascontiguousarray(c_side, dtype=np.float32), device=dev)
    patient = np.asarray(patient)
    _, cand_codes = np.unique(np.asarray(c_side), axis=0, return_inverse=True)
    cand_codes = cand_codes.reshape(-1)
    rng = np.random.default_rng(random_state)
    out = np.full((len(queries), len(draws), len(ks)), np.nan)
    everyone = np.arange(n)
    for b0 in range(0, len(queries), block_rows):
        qb = queries[b0:b0 + block_rows]
        rows = torch.as_tensor(np.ascontiguousarray(q_side[qb], dtype=np.float32), device=dev)
        scores = (rows @ cand.T).cpu().numpy()
        for r, i in enumerate(qb):
            row = scores[r]
            own = patient == patient[i]
            if level == "study":
                t_idx, eligible = i, everyone != i
            else:
                members = np.flatnonzero(own)
                t_idx, eligible = members[np.argmax(row[members])], ~own
            truth = row[t_idx]
            if groups is not None:
                eligible &= groups == groups[i]
            distract = row[eligible]
            above = distract > truth + tie_tol
            tie = cand_codes[eligible] == cand_codes[t_idx]
            for j, n_draw in enumerate(draws):
                if n_draw <= len(distract):
                    out[b0 + r, j] = _pool_hits(above, tie, int(n_draw), ks, n_pools, ties, rng)
    return out
