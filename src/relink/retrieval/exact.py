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

Ties (``tied``: t_i distractors whose embedding is identical to the truth's,
see :mod:`relink.retrieval.counts`):

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
    """P(X <= x) for x = 0..kmax-1, X ~ Hypergeom(population, successes[j], draws); shape (len, kmax).

    pmf(0) comes from ``gammaln`` and the next terms from the ratio
    pmf(x) / pmf(x-1) = (c - x + 1)(draws - x + 1) / (x (population - c - draws + x));
    rows where pmf(0) = 0 exactly (too few failures to fill the draws) take
    the direct formula.
    """
    c = np.asarray(successes, dtype=np.float64)
    pop, n = float(population), float(draws)
    out = np.zeros((len(c), kmax))
    direct = pop - c < n
    ok = ~direct
    if ok.any():
        cc = c[ok][:, None]
        log0 = gammaln(pop - cc + 1) - gammaln(pop - cc - n + 1) - gammaln(pop + 1) + gammaln(pop - n + 1)
        x = np.arange(1, kmax, dtype=np.float64)[None, :]
        # pmf(0) below ~1e-308 underflows to 0; the next kmax terms are then below ~1e-200 too
        step = np.clip(cc - x + 1, 0, None) * np.clip(n - x + 1, 0, None) / (x * (pop - cc - n + x))
        pmf = np.exp(log0) * np.concatenate([np.ones_like(log0), np.cumprod(step, axis=1)], axis=1)
        out[ok] = np.cumsum(pmf, axis=1)
    if direct.any():
        cd = c[direct][:, None]
        x = np.arange(kmax, dtype=np.float64)[None, :]
        logpmf = log_comb(cd, x) + log_comb(pop - cd, n - x) - log_comb(pop, n)
        out[direct] = np.cumsum(np.exp(logpmf), axis=1)
    return np.minimum(out, 1.0)


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
    pops, n_each = np.unique(available, return_counts=True)
    by_pop = np.split(np.argsort(available, kind="stable"), np.cumsum(n_each)[:-1])  # queries of each pool size
    for pop, idx in zip(pops, by_pop):
        if pop < draws:
            continue
        qlo, qhi = np.minimum(lo[idx], pop), np.minimum(hi[idx], pop)
        points = _covered(qlo, qhi, int(pop))
        table = hypergeom_cdf(int(pop), points, int(draws), kmax)[:, ks - 1]
        a = np.searchsorted(points, qlo)
        b = np.searchsorted(points, qhi) + 1
        single = b - a == 1  # no ties: read the table directly (prefix sums would cost precision)
        out[idx[single]] = table[a[single]]
        if not single.all():
            cum = np.vstack([np.zeros((1, len(ks))), np.cumsum(table, axis=0)])
            many = ~single
            out[idx[many]] = np.clip((cum[b[many]] - cum[a[many]]) / width[idx[many]], 0.0, 1.0)
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


def _unique_pairs(m: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (m, d) rows and the inverse index, via one integer key (fast)."""
    key = m.astype(np.int64) * (int(d.max(initial=0)) + 1) + d
    uniq, inverse = np.unique(key, return_inverse=True)
    return np.stack([uniq // (int(d.max(initial=0)) + 1), uniq % (int(d.max(initial=0)) + 1)], 1), inverse.reshape(-1)


def chance_recall(truth_size, draws, ks: Sequence[int]) -> np.ndarray:
    """Recall@K of a random ranking: 1 - C(d, K) / C(d + m, K) per query, shape (n, len(ks)).

    ``draws`` (d) is an int or a per-query array (the full pool). The ratio is
    the product over j < K of (d - j) / (d + m - j), exact to rounding (K/N
    when m = 1).
    """
    m = np.asarray(truth_size, dtype=np.int64)
    d = np.broadcast_to(np.asarray(draws, dtype=np.int64), m.shape)
    ks = np.asarray(ks, dtype=np.int64)
    pairs, inverse = _unique_pairs(m, d)
    j = np.arange(int(ks.max()), dtype=np.float64)
    table = np.empty((len(pairs), len(ks)))
    for row, (mj, dj) in enumerate(pairs):
        table[row] = 1.0 - np.cumprod(np.clip(dj - j, 0, None) / (dj + mj - j))[ks - 1]
    return table[inverse]


def _best_rank_pmf(m: int, d: int) -> np.ndarray:
    """P(best of m truths has rank r), r = 1..d+1, among d + m randomly ordered items.

    P(1) = m / (d + m) and P(r + 1) / P(r) = (d - r + 1) / (d + m - r).
    """
    r = np.arange(1, d + 1, dtype=np.float64)
    return (m / (d + m)) * np.concatenate([[1.0], np.cumprod((d - r + 1) / (d + m - r))])


def chance_rank(truth_size, available) -> tuple[np.ndarray, np.ndarray]:
    """Per-query (expected 1/rank, expected rank) of a random ranking over the full pool."""
    m = np.asarray(truth_size, dtype=np.int64)
    d = np.asarray(available, dtype=np.int64)
    pairs, inverse = _unique_pairs(m, d)
    # plain sums, not a BLAS dot: numpy's threaded BLAS stalls beside torch's threads
    table = np.array([(_best_rank_pmf(int(mj), int(dj)) / np.arange(1, dj + 2)).sum() for mj, dj in pairs])
    rr = table[inverse]
    return rr, (d + m + 1.0) / (m + 1.0)
