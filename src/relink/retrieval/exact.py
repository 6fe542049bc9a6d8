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
see :mod:`relink.retrieval.engine`):

* ``"random"`` (default) — c_i + U candidates outrank the truth, U ~
  Uniform{0..t_i}; ordering then subsampling equals the reverse, so the
  result is exactly the mean over u of P(X_u <= K - 1), X_u ~
  Hypergeom(D_i, c_i + u, N - 1): an attacker with no tie-breaking rule.
* ``"pessimistic"`` — every tie outranks the truth (c_i + t_i).
* ``"optimistic"`` — no tie outranks the truth (c_i).

The CDF is tabled for x = 0..K_max-1 at the distinct c the queries need.
Chance levels are the same quantities for a random ranking:
:func:`chance_recall`, :func:`chance_rank` (MRR), :func:`median_rank_chance`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import digamma, gammaln

from .inputs import TIES

_CDF_ROWS = 1 << 14  # rows of hypergeom_cdf made at once: ~8 MB of temporaries, not ~100 MB at 200,000
_LOG_TINY = -700.0  # exp() of less is near the float64 underflow (denormal from -708): sum logs there


def log_comb(n, k) -> np.ndarray:
    """log C(n, k), -inf outside 0 <= k <= n (broadcasting)."""
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    valid = (k >= 0) & (k <= n)
    kk, nn = np.where(valid, k, 0.0), np.where(valid, n, 0.0)
    return np.where(valid, gammaln(nn + 1) - gammaln(kk + 1) - gammaln(nn - kk + 1), -np.inf)


def hypergeom_cdf(population: int, successes: np.ndarray, draws: int, kmax: int) -> np.ndarray:
    """P(X <= x) for x = 0..kmax-1, X ~ Hypergeom(population, successes[j], draws); shape (len, kmax).

    pmf(0) from ``gammaln``, then the running product of
    pmf(x) / pmf(x-1) = (c - x + 1)(draws - x + 1) / (x (population - c - draws + x)).
    Rows where that product overflows (pmf(0) near the smallest float, large
    K) are summed in log space; rows with pmf(0) = 0 exactly (too few
    failures to fill the draws) take the direct formula.
    """
    c = np.asarray(successes, dtype=np.float64)
    if len(c) > _CDF_ROWS:  # every row is computed on its own, so chunks change no bit, only the memory
        return np.concatenate([hypergeom_cdf(population, c[a:a + _CDF_ROWS], draws, kmax)
                               for a in range(0, len(c), _CDF_ROWS)])
    pop, n = float(population), float(draws)
    out = np.zeros((len(c), kmax))
    direct = pop - c < n
    ok = ~direct
    if ok.any():
        cc = c[ok][:, None]
        log0 = gammaln(pop - cc + 1) - gammaln(pop - cc - n + 1) - gammaln(pop + 1) + gammaln(pop - n + 1)
        x = np.arange(1, kmax, dtype=np.float64)[None, :]
        step = np.clip(cc - x + 1, 0, None) * np.clip(n - x + 1, 0, None) / (x * (pop - cc - n + x))
        with np.errstate(over="ignore", invalid="ignore"):
            pmf = np.exp(log0) * np.concatenate([np.ones_like(log0), np.cumprod(step, axis=1)], axis=1)
        redo = ~np.isfinite(pmf).all(axis=1) | (log0[:, 0] < _LOG_TINY)
        if redo.any():
            with np.errstate(divide="ignore"):  # a zero ratio: log -inf, and every later term is 0
                steps = np.cumsum(np.log(step[redo]), axis=1)
            pmf[redo] = np.exp(log0[redo] + np.concatenate([np.zeros((int(redo.sum()), 1)), steps], axis=1))
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
    """Recall@K of a random ranking: 1 - C(d, K) / C(d + m, K) per query, shape (n, len(ks)) (K/N when m = 1).

    ``draws`` (d) is an int or a per-query array (the full pool); the ratio is
    the product over j < K of (d - j) / (d + m - j).
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
    """Per-query (expected 1/rank, expected rank) of a random ranking over the full pool (not the chance of
    a *median* rank: :func:`median_rank_chance`)."""
    m = np.asarray(truth_size, dtype=np.int64)
    d = np.asarray(available, dtype=np.int64)
    pairs, inverse = _unique_pairs(m, d)
    # plain sums, not a BLAS dot: numpy's threaded BLAS stalls beside torch's threads
    table = np.array([(_best_rank_pmf(int(mj), int(dj)) / np.arange(1, dj + 2)).sum() for mj, dj in pairs])
    rr = table[inverse]
    return rr, (d + m + 1.0) / (m + 1.0)


def best_rank_survival(truth_size: int, available: int) -> np.ndarray:
    """P(best rank > r) for r = 0..d + 1: m truths and d distractors in a random order.

    prod_{j<r} (d - j) / (d + m - j), summed in log space as log1p terms
    (accurate for d in the hundreds of thousands, where log-gamma
    differences are not); 0 from r = d + 1.
    """
    m, d = int(truth_size), int(available)
    j = np.arange(d, dtype=np.float64)
    out = np.zeros(d + 2)
    out[0] = 1.0
    out[1:d + 1] = np.exp(np.cumsum(np.log1p(-m / (d + m - j))))
    return out


_HALF_TOL = 1e-9  # a CDF this close to 1/2 counts as 1/2: the median then moves by half a rank at most


def median_rank_chance(truth_size, available) -> float:
    """Chance value of the median rank over a set of queries: the median of the pooled null.

    Under a random ranking query i's best truth has rank R_i with
    P(R_i > r) = prod_{j<r} (d_i - j) / (d_i + m_i - j)
    (:func:`best_rank_survival`). The sample median of the R_i converges to
    the median of the pooled null F(r) = 1 - mean_i P(R_i > r): the smallest
    r with F(r) >= 1/2, or r + 1/2 when F(r) = 1/2 exactly (np.median's
    convention). Not the median of the per-query mean ranks (d + m + 1)/(m + 1):
    for m > 1 the best-of-m rank is right-skewed, and that value made random
    embeddings look better than chance at the patient level.
    """
    m = np.asarray(truth_size, dtype=np.int64).reshape(-1)
    d = np.asarray(available, dtype=np.int64).reshape(-1)
    if not len(m):
        return float("nan")
    pairs, inverse = _unique_pairs(m, d)
    weight = np.bincount(inverse, minlength=len(pairs)) / len(m)
    survival = np.zeros(int(pairs[:, 1].max()) + 2)  # P(rank > r) of the pooled null, r = 0..max d + 1
    for (mg, dg), w in zip(pairs, weight):
        survival[:dg + 2] += w * best_rank_survival(mg, dg)
    cdf = 1.0 - survival
    r = int(np.argmax(cdf[1:] >= 0.5 - _HALF_TOL)) + 1  # the smallest rank whose CDF reaches 1/2
    return r + 0.5 if abs(cdf[r] - 0.5) <= _HALF_TOL else float(r)
