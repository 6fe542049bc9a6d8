"""Brute-force references for the retrieval tests: the whole score matrix, explicit masks.

Slow on purpose and written from the definitions in relink.retrieval.engine,
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


def _truth(M, C, i, patient, level):
    """Index of the truth candidate: the pair itself, or the patient's best-scoring candidate."""
    if level == "study":
        return i
    members = np.flatnonzero(patient == patient[i])
    return members[np.argmax(M[i, members])]


def brute_counts(image, text, patient, groups=None, tol=1e-6):
    """(direction, level, negatives) -> (above, tied, available, truth_size) from explicit masks.

    above: eligible distractors scoring more than tol above the truth; tied: eligible
    distractors whose embedding equals the truth candidate's.
    """
    S = scores(image, text)
    n = len(image)
    patient = np.asarray(patient)
    groupings = [("random", np.zeros(n, int))] + list((groups or {}).items())
    out = {}
    for direction, M, C in (("image_to_report", S, text), ("report_to_image", S.T, image)):
        for neg, g in groupings:
            for level in ("study", "patient"):
                rows = []
                for i in range(n):
                    own = patient == patient[i]
                    t = _truth(M, C, i, patient, level)
                    eligible = (np.arange(n) != i) if level == "study" else ~own
                    eligible = eligible & (g == g[i])
                    v = M[i, eligible]
                    twins = np.all(C[eligible] == C[t], axis=1)
                    rows.append(((v > M[i, t] + tol).sum(), twins.sum(), eligible.sum(), 1 if level == "study" else own.sum()))
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
    M, C = (S, text) if direction == "image_to_report" else (S.T, image)
    n = len(image)
    patient = np.asarray(patient)
    g = np.zeros(n, int) if groups is None else np.asarray(groups)
    out = np.full(n, np.nan)
    for i in range(n):
        own = patient == patient[i]
        t = _truth(M, C, i, patient, level)
        eligible = (np.arange(n) != i) if level == "study" else ~own
        idx = np.flatnonzero(eligible & (g == g[i]))
        if len(idx) < n_pool - 1:
            continue
        hits = []
        for pool in itertools.combinations(idx, n_pool - 1):
            pool = list(pool)
            above = (M[i, pool] > M[i, t] + tol).sum()
            tied = np.all(C[pool] == C[t], axis=1).sum()
            hits.append(hit_probability(above, tied, k, ties))
        out[i] = np.mean(hits)
    return out


def rank_counts(image, text, patient, groupings=(), directions=DIRECTIONS, levels=("study", "patient"),
                tie_tol=1e-6, device=None, block_rows=None, tile_cols=None, engine="auto", memory=None):
    """The audit's blocked rank counts of in-memory arrays, in input order (not a reference: the engine
    itself, through :func:`relink.retrieval.engine.count_ranks`, for tests that compare it with one).

    ``block_rows``, ``tile_cols``, ``engine`` and ``memory`` tune the passes; results do not depend on them.
    """
    from types import SimpleNamespace

    from relink.embeddings import RowSource
    from relink.retrieval.engine import RankCounts, Rows, count_ranks
    from relink.retrieval.scale import Scale

    n = image.shape[0]
    spec = SimpleNamespace(directions=directions, levels=levels, tie_tol=tie_tol, device=device, confident=())
    rows = Rows(RowSource(image, normalise=False), RowSource(text, normalise=False), np.asarray(patient),
                [(g, np.asarray(c)) for g, c in groupings])
    out = count_ranks(rows, spec, Scale(memory=memory, tiles=(block_rows, tile_cols), engine=engine))
    inverse = np.empty(n, dtype=np.int64)
    inverse[out.order] = np.arange(n)

    def back(a):
        return np.ascontiguousarray(a[inverse])

    return {key: RankCounts(back(rc.above), back(rc.tied), back(rc.available), back(rc.truth_size))
            for key, rc in out.items()}
