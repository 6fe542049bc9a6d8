"""Patient-clustered intervals that hold their coverage, from per-patient sums (no resampling).

Re-linkage metrics are means of rare events, and the percentile patient
bootstrap only re-weights the hits it saw (no hit gives [0, 0]): it covered
chance in 63-89% of random sets (tests/helpers/null_coverage.py). The
methods here were chosen by that null simulation, one per metric:

* **Means of per-query values in [0, 1]** (Recall@K, reciprocal rank;
  :func:`mean_interval`): Clopper-Pearson on an *effective* count (Korn and
  Graubard 1998). The patient-clustered (CR1) variance of the mean,
  ``V = G/(G-1) * sum_p (S_p - m n_p)^2 / n^2`` over patients p with value
  sum S_p and n_p queries, gives ``deff = V / (m(1-m)/n)``, floored at 1
  (narrower under-covered); the mean is ``x = m n_eff`` successes of
  ``n_eff = n / deff`` trials. The *upper* bound, which a LOW verdict rests
  on, takes the larger of that and the design effect of perfectly correlated
  patients (``sum n_p^2 / n``): when a few patients carry most of the hits,
  a sample holding few of them under-states the variance (the upper bound
  missed in 3.3-4.7% of draws at a nominal 2.5%; with this floor, 0-0.5%).
  No variation at all gives deff 1.
* **Median rank** (:func:`median_interval`): the Woodruff interval, from the
  patient-clustered variance of the share of queries at or below the sample
  median (distribution-free: a rank is no mean).
* **Paired contrasts** (:mod:`relink.retrieval.contrast`): a
  leave-one-patient-out jackknife with Student's t on G - 1 degrees of freedom.

Fewer than two patients give no interval (NaN). Deterministic: the same
values give the same interval, in any order.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def clustered_variance(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, CR1 variance of the mean, and cluster count of each column of per-cluster sums and counts.

    ``sums``, ``counts``: (clusters, F), the sum of a column's values over a
    cluster's queries and how many queries it has (0: the cluster has none
    in that column and does not count).
    """
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=0)
    g = (counts > 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = sums.sum(axis=0) / n
        resid = sums - m * counts
        v = np.where(g > 1, g / (g - 1.0) * (resid ** 2).sum(axis=0) / n ** 2, np.nan)
    return m, v, g


def mean_interval(sums, counts, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval on the design-effect count of each column's mean of values in [0, 1]; the upper
    bound on the count of perfectly correlated patients when that is smaller (see the module docstring)."""
    m, v, g = clustered_variance(sums, counts)
    n = np.asarray(counts, dtype=np.float64).sum(axis=0)
    alpha = 1.0 - level
    low, high = np.full(m.shape, np.nan), np.full(m.shape, np.nan)
    ok = (g >= 2) & np.isfinite(m)
    if not ok.any():
        return low, high
    mo, vo, no = np.clip(m[ok], 0.0, 1.0), v[ok], n[ok]
    binomial = mo * (1.0 - mo) / no
    with np.errstate(invalid="ignore", divide="ignore"):
        deff = np.where(binomial > 0, np.maximum(vo / binomial, 1.0), 1.0)
    # the upper bound: never below the design effect of perfectly correlated patients (module docstring)
    deff_upper = np.maximum(deff, (np.asarray(counts, dtype=np.float64)[:, ok] ** 2).sum(axis=0) / no)
    n_eff, n_up = no / deff, no / deff_upper
    x, x_up = mo * n_eff, mo * n_up
    lo = np.where(x > 0, stats.beta.ppf(alpha / 2, np.maximum(x, 1e-300), n_eff - x + 1), 0.0)
    hi = np.where(n_up - x_up > 0, stats.beta.ppf(1 - alpha / 2, x_up + 1, np.maximum(n_up - x_up, 1e-300)), 1.0)
    low[ok], high[ok] = np.minimum(lo, mo), np.maximum(hi, mo)
    return low, high


def cluster_sums(values: np.ndarray, codes: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and counts of the non-NaN entries of each column of ``values`` (n, F)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(codes), -1)
    kept = ~np.isnan(values)
    sums = np.stack([np.bincount(codes, weights=np.where(kept[:, j], values[:, j], 0.0), minlength=n_clusters)
                     for j in range(values.shape[1])], axis=1)
    counts = np.stack([np.bincount(codes, weights=kept[:, j].astype(np.float64), minlength=n_clusters)
                       for j in range(values.shape[1])], axis=1)
    return sums, counts


def median_interval(values: np.ndarray, codes: np.ndarray, n_clusters: int, level: float = 0.95) -> tuple[float, float]:
    """Woodruff interval of the median of ``values`` (n,) clustered by ``codes``; NaN under two clusters."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or len(np.unique(codes)) < 2:
        return float("nan"), float("nan")
    med = np.median(values)
    below = (values <= med).astype(np.float64)
    sums, counts = cluster_sums(below[:, None], codes, n_clusters)
    share, var, _ = clustered_variance(sums, counts)
    # the share at or below the median is about 1/2; its variance is never taken below the binomial's / n
    # when the median sits on a tie (var near 0 there would give a zero-width interval)
    se = float(np.sqrt(max(var[0], 0.25 / len(values) * 0.25)))
    g = len(np.unique(codes))
    z = stats.t.ppf(0.5 + level / 2, g - 1)  # Student's t on (patients - 1): few patients, wider
    p_lo, p_hi = max(0.0, 0.5 - z * se), min(1.0, 0.5 + z * se)
    ordered = np.sort(values)
    n = len(ordered)
    # order statistics on the conservative side, one further out each way: the share below a sample quantile
    # moves in steps of 1/n, and at 60 patients the nearer choice put chance above the interval in 4% of seeds
    lo = ordered[max(0, int(np.floor(p_lo * n)) - 2)]
    hi = ordered[min(n - 1, int(np.ceil(p_hi * n)) + 1)]
    return float(min(lo, med)), float(max(hi, med))
