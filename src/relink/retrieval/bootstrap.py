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
with one ``random_state`` sees the same replicates. :func:`replicates` returns
the replicate estimates themselves, for statistics that combine samples
(e.g. the difference of two independent groups' means, each resampled with
its own seed). Intervals are percentile
intervals (``level`` = 0.95 gives the 2.5 and 97.5 percentiles).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .blocked import torch_threads


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


def _mean_sums(values: np.ndarray, codes: np.ndarray, n_clusters: int):
    """Per-cluster sums and counts of the non-NaN values, side by side: a (clusters, 2F) float32 tensor."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    present = ~torch.isnan(t)
    idx = torch.from_numpy(codes)
    sums = torch.zeros((n_clusters, t.shape[1]), dtype=torch.float64).index_add_(0, idx, torch.where(present, t, 0.0))
    counts = torch.zeros((n_clusters, t.shape[1]), dtype=torch.float64).index_add_(0, idx, present.double())
    # float32 is ample: counts stay exact below 2**24 and the sums carry ~7 significant digits
    return torch.cat([sums, counts], dim=1).float()


def _replicate(w, both, f, g, medians, orders, codes, n_clusters, mean_reps, median_reps):
    """Estimates under one chunk of replicate weights, appended to the two lists."""
    import torch

    if f:
        num_den = (torch.from_numpy(w) @ both).double().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_reps.append(num_den[:, :f] / num_den[:, f:])
    if g:
        median_reps.append(np.stack([_band_medians(medians[o, j], codes[o], n_clusters, w)
                                     for j, o in enumerate(orders)], axis=1))


def replicates(means, medians, clusters, n_boot: int = 1000, random_state=0) -> tuple[np.ndarray, np.ndarray]:
    """Every replicate's column means (NaN = left out) and column medians: arrays (n_boot, F), (n_boot, G).

    ``means`` (n, F) and ``medians`` (n, G) may be None. For a statistic built
    from several estimates (a difference of two independent samples'
    means, say), combine the replicate rows and take percentiles.
    """
    n = len(clusters)
    means = np.zeros((n, 0)) if means is None else np.asarray(means, dtype=np.float64).reshape(n, -1)
    medians = np.zeros((n, 0)) if medians is None else np.asarray(medians, dtype=np.float64).reshape(n, -1)
    codes, n_clusters = _cluster_codes(clusters)
    f, g = means.shape[1], medians.shape[1]
    if n_boot <= 0 or n_clusters == 0:
        return np.zeros((0, f)), np.zeros((0, g))
    mean_reps, median_reps = [], []
    # Small torch operations between numpy steps: torch's thread pool costs more to wake (and then
    # spins, taking the cores from numpy) than these take on one thread (~250x for index_add_ here).
    with torch_threads(1):
        both = _mean_sums(means, codes, n_clusters) if f else None
        orders = [np.argsort(medians[:, j], kind="stable") for j in range(g)]
        for w in replicate_weights(n_clusters, n_boot, random_state):
            _replicate(w, both, f, g, medians, orders, codes, n_clusters, mean_reps, median_reps)
    return (np.vstack(mean_reps) if f else np.zeros((n_boot, 0)),
            np.vstack(median_reps) if g else np.zeros((n_boot, 0)))


def percentile_interval(replicate_values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column of (B, F) replicate values; NaN for a column with none."""
    replicate_values = np.asarray(replicate_values, dtype=np.float64)
    if not len(replicate_values):
        return np.full(replicate_values.shape[1], np.nan), np.full(replicate_values.shape[1], np.nan)
    return _interval(replicate_values, level)


def bootstrap_intervals(means, medians, clusters, n_boot: int = 1000, random_state=0, level: float = 0.95):
    """Intervals of column means (NaN = left out) and column medians under the same replicates.

    ``means`` (n, F) and ``medians`` (n, G) may be None. Returns
    ``(mean_low, mean_high, median_low, median_high)``; all NaN when n_boot = 0.
    """
    mean_reps, median_reps = replicates(means, medians, clusters, n_boot, random_state)
    return (*percentile_interval(mean_reps, level), *percentile_interval(median_reps, level))


def bootstrap_means(values, clusters, n_boot: int = 1000, random_state=0,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column's mean over its non-NaN queries; shapes (F,), (F,)."""
    return bootstrap_intervals(values, None, clusters, n_boot, random_state, level)[:2]


def weighted_median(sorted_values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Median of ``sorted_values`` under each row of ``weights`` (b, n); equals np.median for unit weights."""
    cum = np.cumsum(weights, axis=1)
    half = cum[:, -1:] / 2.0
    lo = np.argmax(cum >= half, axis=1)
    hi = np.argmax(cum > half, axis=1)
    return (sorted_values[lo] + sorted_values[hi]) / 2.0


def _matvec(weights: np.ndarray, vec: np.ndarray) -> np.ndarray:
    # einsum's own loop: numpy's threaded BLAS stalls on a shared machine for products this small
    return np.einsum("bp,p->b", weights, vec.astype(np.float32), optimize=False)


def _band_medians(v: np.ndarray, c: np.ndarray, n_clusters: int, weights: np.ndarray) -> np.ndarray:
    """Weighted medians of sorted values ``v`` (clusters ``c``) under each weight row.

    A replicate's median lies near the sample median, so the cumulative sum is
    only formed over a central band of the sorted values, starting from the
    weight below the band (per-cluster counts times the weights). Replicates
    whose median falls outside the band are recomputed in full: the result is
    exact either way.
    """
    n = len(v)
    per_cluster = np.bincount(c, minlength=n_clusters).astype(np.float64)
    # spread of the weight share below a fixed point under cluster resampling
    spread = np.sqrt((per_cluster ** 2).sum()) / (2 * n)
    half_width = min(0.5, 12 * spread + 16 / n)
    lo, hi = max(0, int(np.floor((0.5 - half_width) * n))), min(n, int(np.ceil((0.5 + half_width) * n)))
    if hi <= lo:
        return weighted_median(v, weights[:, c])
    below = _matvec(weights, np.bincount(c[:lo], minlength=n_clusters))
    cum = below[:, None] + np.cumsum(weights[:, c[lo:hi]], axis=1)
    half = _matvec(weights, per_cluster) / 2.0
    first_ge = np.argmax(cum >= half[:, None], axis=1)
    first_gt = np.argmax(cum > half[:, None], axis=1)
    out = (v[lo + first_ge] + v[lo + first_gt]) / 2.0
    inside = (below < half) & (cum[:, -1] > half)  # both crossings fall within the band
    if not inside.all():
        redo = ~inside
        out[redo] = weighted_median(v, weights[redo][:, c])
    return out


def bootstrap_medians(values, clusters, n_boot: int = 1000, random_state=0,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column's median over queries (no NaN); shapes (F,), (F,)."""
    return bootstrap_intervals(None, values, clusters, n_boot, random_state, level)[2:]
