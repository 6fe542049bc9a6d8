"""Patient-clustered bootstrap intervals from per-query quantities.

Pairs of one patient are not independent (one patient's images look alike and
so do their reports), so an interval must resample *patients*, each with all
of its queries, not pairs. Contract:

* ``values``: (n, F) per-query quantities, one column per estimate (e.g. the
  expected Recall@K of each query for one (direction, level, negatives, N,
  K)); NaN marks a query left out of that estimate (a pool it cannot fill).
* ``clusters``: (n,) cluster labels (patient ids); the resampling unit.

A replicate draws as many patients as there are, with replacement. That is a
multinomial count w_p per patient, so an estimate that is a mean over queries
becomes a ratio of weighted per-patient sums,
``sum_p w_p S_pf / sum_p w_p n_pf``: the (n, F) table is reduced to per-patient
sums once and every replicate is one matrix product. Medians (median rank)
take the weighted median of the queries under the same weights.
Replicate weights come from :func:`replicate_weights`, so every estimate made
with one ``random_state`` sees the same replicates. Intervals are percentile
intervals (``level`` = 0.95 gives the 2.5 and 97.5 percentiles).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def replicate_weights(n_clusters: int, n_boot: int, random_state=0, chunk: int = 100) -> Iterator[np.ndarray]:
    """Yield (b, n_clusters) float32 multinomial counts, b <= chunk, n_boot rows in all."""
    rng = np.random.default_rng(random_state)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n_clusters, size=(b, n_clusters))
        flat = (draws + (np.arange(b) * n_clusters)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_clusters).reshape(b, n_clusters).astype(np.float32)


def _cluster_codes(clusters) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1 if len(codes) else 0


def _interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 50.0 * (1.0 - level)
    low = np.full(replicates.shape[1], np.nan)
    high = np.full(replicates.shape[1], np.nan)
    ok = ~np.isnan(replicates).all(axis=0)  # a column no replicate could estimate stays NaN
    if ok.any():
        low[ok], high[ok] = np.nanpercentile(replicates[:, ok], [tail, 100.0 - tail], axis=0)
    return low, high


def bootstrap_means(values, clusters, n_boot: int = 1000, random_state=0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column's mean over its non-NaN queries; shapes (F,), (F,)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    codes, n_clusters = _cluster_codes(clusters)
    if n_boot <= 0 or n_clusters == 0:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    present = ~np.isnan(values[order])
    sums = np.add.reduceat(np.where(present, values[order], 0.0), starts, axis=0)
    counts = np.add.reduceat(present.astype(np.float64), starts, axis=0)
    reps = []
    for w in replicate_weights(n_clusters, n_boot, random_state):
        w = w.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append((w @ sums) / (w @ counts))
    return _interval(np.vstack(reps), level)


def weighted_median(sorted_values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Median of ``sorted_values`` under each row of ``weights`` (b, n); equals np.median for unit weights."""
    cum = np.cumsum(weights, axis=1)
    half = cum[:, -1:] / 2.0
    lo = np.argmax(cum >= half, axis=1)
    hi = np.argmax(cum > half, axis=1)
    return (sorted_values[lo] + sorted_values[hi]) / 2.0


def bootstrap_medians(values, clusters, n_boot: int = 1000, random_state=0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column's median over queries (no NaN); shapes (F,), (F,)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    codes, n_clusters = _cluster_codes(clusters)
    if n_boot <= 0 or n_clusters == 0:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan
    orders = [np.argsort(values[:, f], kind="stable") for f in range(values.shape[1])]
    reps = []
    for w in replicate_weights(n_clusters, n_boot, random_state):
        reps.append(np.stack([weighted_median(values[o, f], w[:, codes[o]]) for f, o in enumerate(orders)], axis=1))
    return _interval(np.vstack(reps), level)
