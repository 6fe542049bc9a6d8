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


def p_none(d, available, draws):
    """P(none of ``d`` marked candidates among ``draws`` drawn without replacement from ``available``):
    C(D - d, n) / C(D, n), per query from the audit's own table; the full pool (``draws=None``): [d = 0]."""
    from relink.retrieval.confident import _p_none_upto

    d = np.asarray(d, dtype=np.int64)
    avail = np.asarray(available, dtype=np.int64)
    if draws is None:
        return np.where((avail < 0)[:, None] if d.ndim == 2 else avail < 0, np.nan, (d <= 0).astype(np.float64))
    out = np.empty(d.shape)
    for pop in np.unique(avail).tolist():
        idx = np.flatnonzero(avail == pop)
        out[idx] = _p_none_upto(int(pop), int(draws), int(pop) + 1)[np.clip(d[idx], 0, pop)]
    return out


def link_values(truth, r1, d_counted, d_floor, above, available, draws, counted, low):
    """Per-query (correct, links) at the thresholds ``low`` + ``counted`` (n, points), and the lower bound of the
    links at the ``low`` points (n, len(low)), as literal tables: the reference of the attacker's sums."""
    truth = np.asarray(truth, dtype=np.float32)
    thr = np.concatenate([low, counted]).astype(np.float32)
    linked = truth[:, None] >= thr[None, :]  # the truth itself clears t: a link for sure
    correct = linked * np.asarray(r1, dtype=np.float64)[:, None]
    n_low = len(low)
    links = np.empty(correct.shape)
    links[:, n_low:] = 1.0 - p_none(d_counted, available, draws)
    links[:, :n_low] = (1.0 - p_none(np.asarray(above), available, draws))[:, None]
    low_links = np.repeat((1.0 - p_none(np.asarray(d_floor), available, draws))[:, None], n_low, axis=1)
    np.maximum(links, linked, out=links)
    np.maximum(low_links, linked[:, :n_low], out=low_links)
    return correct, links, low_links
