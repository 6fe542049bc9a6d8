"""Exact expected Recall@K over random candidate pools, from per-query counts.

A pool for query i holds its truth set (one candidate at the study level, the
patient's m_i candidates at the patient level) and ``draws`` = N - 1
distractors drawn without replacement from the query's ``available`` ones
(D_i of them). If c_i of those score above the (best) truth, the number of
them in the pool is X ~ Hypergeom(D_i, c_i, N - 1), and the query is a hit at
K when fewer than K pool members outrank its best truth::

    E[Recall@K]_i = P(X <= K - 1)

``draws=None`` is the full pool (every available distractor): the hit is then
certain or impossible, 1[c_i <= K - 1]. A query with D_i < N - 1 cannot fill
the pool: its value is NaN and it is left out of that N (the caller reports
the coverage).

Ties (``tied`` t_i distractors within the tie tolerance of the truth):

* ``"random"`` (default) — the truth's place among its ties is uniformly
  random, i.e. c_i + U with U ~ Uniform{0..t_i} candidates outrank it. Since
  a random order of the whole set followed by random subsampling is the same
  as the reverse, the result is exactly the mean over u of P(X_u <= K - 1)
  with X_u ~ Hypergeom(D_i, c_i + u, N - 1). This is "ties count half" on
  average, and it is what an attacker with no tie-breaking rule achieves.
* ``"pessimistic"`` — every tie outranks the truth (c_i + t_i).
* ``"optimistic"`` — no tie outranks the truth (c_i).

The pmf is evaluated in log space from ``gammaln`` for x = 0..K_max-1 only,
at the distinct values of c that queries need, so every N and K costs one
small table. Chance levels (:func:`chance_recall`) are the same quantities
for a scorer that ranks at random: K/N at the study level, 1 - C(N-1, K) /
C(N-1+m, K) for a truth set of m.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import digamma, gammaln

TIES = ("random", "pessimistic", "optimistic")


def log_comb(n, k) -> np.ndarray:
    """log C(n, k), -inf outside 0 <= k <= n (broadcasting)."""
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    valid = (k >= 0) & (k <= n)
    kk, nn = np.where(valid, k, 0.0), np.where(valid, n, 0.0)
    return np.where(valid, gammaln(nn + 1) - gammaln(kk + 1) - gammaln(nn - kk + 1), -np.inf)


def hypergeom_cdf(population: int, successes: np.ndarray, draws: int, kmax: int) -> np.ndarray:
    """P(X <= x) for x = 0..kmax-1, X ~ Hypergeom(population, successes[j], draws); shape (len, kmax)."""
    c = np.asarray(successes, dtype=np.float64)[:, None]
    x = np.arange(kmax, dtype=np.float64)[None, :]
    logpmf = log_comb(c, x) + log_comb(population - c, draws - x) - log_comb(population, draws)
    return np.minimum(np.cumsum(np.exp(logpmf), axis=1), 1.0)


def _tie_range(above: np.ndarray, tied: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    above = np.asarray(above, dtype=np.int64)
    tied = np.asarray(tied, dtype=np.int64)
    if ties == "pessimistic":
        return above + tied, above + tied
    if ties == "optimistic":
        return above, above
    return above, above + tied


def _covered(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
    """Sorted integers lying in at least one [lo_i, hi_i]."""
    diff = np.zeros(size + 2, dtype=np.int64)
    np.add.at(diff, lo, 1)
    np.add.at(diff, hi + 1, -1)
    return np.flatnonzero(np.cumsum(diff)[: size + 1] > 0)


def expected_recall(above, tied, available, draws: int | None, ks: Sequence[int], ties: str = "random") -> np.ndarray:
    """Per-query expected Recall@K, shape (n, len(ks)); NaN where the pool cannot be filled."""
    ks = np.asarray(ks, dtype=np.int64)
    lo, hi = _tie_range(above, tied, ties)
    available = np.asarray(available, dtype=np.int64)
    width = (hi - lo + 1).astype(np.float64)[:, None]
    if draws is None:
        return np.clip(ks[None, :] - lo[:, None], 0, hi[:, None] - lo[:, None] + 1) / width
    out = np.full((len(lo), len(ks)), np.nan)
    kmax = int(ks.max())
    for pop in np.unique(available):
        if pop < draws:
            continue
        idx = np.flatnonzero(available == pop)
        qlo, qhi = np.minimum(lo[idx], pop), np.minimum(hi[idx], pop)
        points = _covered(qlo, qhi, int(pop))
        table = hypergeom_cdf(int(pop), points, int(draws), kmax)[:, ks - 1]
        cum = np.vstack([np.zeros((1, len(ks))), np.cumsum(table, axis=0)])
        a = np.searchsorted(points, qlo)
        b = np.searchsorted(points, qhi) + 1
        out[idx] = np.clip((cum[b] - cum[a]) / width[idx], 0.0, 1.0)
    return out


def reciprocal_rank(above, tied, ties: str = "random") -> np.ndarray:
    """Per-query expected 1 / rank of the (best) truth in the full pool."""
    lo, hi = _tie_range(above, tied, ties)
    # mean over r in [lo+1, hi+1] of 1/r = (H(hi+1) - H(lo)) / (hi - lo + 1), H(k) = digamma(k+1) + gamma
    width = hi - lo + 1
    spread = (digamma(hi + 2.0) - digamma(lo + 1.0)) / width
    return np.where(width == 1, 1.0 / (lo + 1.0), spread)


def expected_rank(above, tied, ties: str = "random") -> np.ndarray:
    """Per-query expected rank (1 = first) of the (best) truth in the full pool."""
    lo, hi = _tie_range(above, tied, ties)
    return (lo + hi) / 2.0 + 1.0


def chance_recall(truth_size, draws, ks: Sequence[int]) -> np.ndarray:
    """Recall@K of a random ranking: 1 - C(d, K) / C(d + m, K) per query, shape (n, len(ks)).

    ``draws`` (d) is an int or a per-query array (the full pool).
    """
    m = np.asarray(truth_size, dtype=np.float64)[:, None]
    d = np.broadcast_to(np.asarray(draws, dtype=np.float64), m.shape[:1])[:, None]
    k = np.asarray(ks, dtype=np.float64)[None, :]
    return 1.0 - np.exp(log_comb(d, k) - log_comb(d + m, k))


def _best_rank_pmf(m: int, d: int) -> np.ndarray:
    """P(best of m truths has rank r), r = 1..d+1, among d + m randomly ordered items."""
    r = np.arange(1, d + 2, dtype=np.float64)
    return np.exp(log_comb(d + m - r, m - 1) - log_comb(d + m, m))


def chance_rank(truth_size, available) -> tuple[np.ndarray, np.ndarray]:
    """Per-query (expected 1/rank, expected rank) of a random ranking over the full pool."""
    m = np.asarray(truth_size, dtype=np.int64)
    d = np.asarray(available, dtype=np.int64)
    rr = np.empty(len(m))
    pairs, inverse = np.unique(np.stack([m, d], 1), axis=0, return_inverse=True)
    for j, (mj, dj) in enumerate(pairs):
        pmf = _best_rank_pmf(int(mj), int(dj))
        rr[inverse.reshape(-1) == j] = float(pmf @ (1.0 / np.arange(1, dj + 2)))
    return rr, (d + m + 1.0) / (m + 1.0)
