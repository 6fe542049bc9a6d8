"""Patient-clustered bootstrap of column means, for statistics of *independent* samples (the member gap).

The audit's own intervals are not bootstrapped (:mod:`relink.retrieval.intervals`
says why). ``values``: (n, F) per-query quantities (NaN: left out of that
column); ``clusters``: (n,) patient ids, the resampling unit. A replicate's
multinomial patient counts w_p make a mean the ratio ``sum_p w_p S_pf /
sum_p w_p n_pf`` of per-patient sums, so every replicate is one matrix
product. Intervals are percentile intervals.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .engine.backends import torch_threads


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


def replicates(means, clusters, n_boot: int = 1000, random_state=0) -> np.ndarray:
    """Every replicate's column means of ``means`` (n, F) (NaN = left out): an array (n_boot, F). For several
    independent samples, draw each one's replicates with its own ``random_state`` and combine the rows."""
    import torch

    n = len(clusters)
    means = np.asarray(means, dtype=np.float64).reshape(n, -1)
    codes, n_clusters = _cluster_codes(clusters)
    f = means.shape[1]
    if n_boot <= 0 or n_clusters == 0:
        return np.zeros((0, f))
    out = []
    # small torch operations between numpy steps: waking torch's thread pool costs more than they take
    with torch_threads(1):
        both = _mean_sums(means, codes, n_clusters)
        for w in replicate_weights(n_clusters, n_boot, random_state):
            num_den = (torch.from_numpy(w) @ both).double().numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(num_den[:, :f] / num_den[:, f:])
    return np.vstack(out)


def percentile_interval(replicate_values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column of (B, F) replicate values; NaN for a column no replicate estimates."""
    replicate_values = np.asarray(replicate_values, dtype=np.float64)
    low = np.full(replicate_values.shape[1], np.nan)
    high = np.full(replicate_values.shape[1], np.nan)
    if not len(replicate_values):
        return low, high
    tail = 50.0 * (1.0 - level)
    ok = ~np.isnan(replicate_values).all(axis=0)
    if ok.any():
        low[ok], high[ok] = np.nanpercentile(replicate_values[:, ok], [tail, 100.0 - tail], axis=0)
    return low, high
