"""Brute-force references for the retrieval tests: the whole score matrix, explicit masks.

Slow on purpose and written from the definitions in relink.retrieval.counts,
not from its code: the blocked kernel, the hypergeometric formula and the
bootstrap are all checked against these.
"""

from __future__ import annotations

import itertools

import numpy as np

DIRECTIONS = ("image_to_report", "report_to_image")


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scores(image, text):
    """Full score matrix in float64 rounded to float32 (the kernel's truth-score arithmetic)."""
    return (image.astype(np.float64) @ text.astype(np.float64).T).astype(np.float32)


def brute_counts(image, text, patient, groups=None, tol=1e-6):
    """(direction, level, negatives) -> (above, tied, available, truth_size) from explicit masks."""
    S = scores(image, text)
    n = len(image)
    patient = np.asarray(patient)
    groupings = [("random", np.zeros(n, int))] + list((groups or {}).items())
    out = {}
    for direction, M in (("image_to_report", S), ("report_to_image", S.T)):
        for neg, g in groupings:
            for level in ("study", "patient"):
                rows = []
                for i in range(n):
                    own = patient == patient[i]
                    if level == "study":
                        truth, eligible, m = M[i, i], np.arange(n) != i, 1
                    else:
                        truth, eligible, m = M[i, own].max(), ~own, own.sum()
                    eligible = eligible & (g == g[i])
                    v = M[i, eligible]
                    rows.append(((v > truth + tol).sum(), (np.abs(v - truth) <= tol).sum(), eligible.sum(), m))
                out[(direction, level, neg)] = tuple(np.array(c) for c in zip(*rows))
    return out


def hit_probability(a, b, k, ties="random"):
    """P(hit at K) when a pool members outrank the truth and b tie with it."""
    if ties == "pessimistic":
        return float(a + b <= k - 1)
    if ties == "optimistic":
        return float(a <= k - 1)
    return min(max(k - a, 0), b + 1) / (b + 1)


def enumerate_recall(image, text, patient, n_pool, k, direction="image_to_report", level="study",
                     groups=None, ties="random", tol=1e-6):
    """Per-query Recall@K averaged over every possible pool (NaN: the pool cannot be filled)."""
    S = scores(image, text)
    M = S if direction == "image_to_report" else S.T
    n = len(image)
    patient = np.asarray(patient)
    g = np.zeros(n, int) if groups is None else np.asarray(groups)
    out = np.full(n, np.nan)
    for i in range(n):
        own = patient == patient[i]
        truth = M[i, i] if level == "study" else M[i, own].max()
        eligible = (np.arange(n) != i) if level == "study" else ~own
        idx = np.flatnonzero(eligible & (g == g[i]))
        if len(idx) < n_pool - 1:
            continue
        hits = []
        for pool in itertools.combinations(idx, n_pool - 1):
            v = M[i, list(pool)]
            hits.append(hit_probability((v > truth + tol).sum(), (np.abs(v - truth) <= tol).sum(), k, ties))
        out[i] = np.mean(hits)
    return out
