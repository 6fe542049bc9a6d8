"""Confident re-links: the threshold attacker, exactly, over random pools.

In a pool of N candidates (the truth set and N - 1 distractors drawn without
replacement from the query's D_i available ones) the attacker links a
released image to its top-scoring candidate only if that score clears a
threshold t. For query i with (best) truth score s_i, c_i distractors
outranking it and d_i(t) distractors scoring at or above t:

* P(correct link at t) = [s_i >= t] x P(none of the c_i in the pool)
  (the Recall@1 of :mod:`relink.retrieval.exact`, ties broken as the audit's);
* P(any link at t) = 1 - [s_i < t] x P(none of the d_i(t) in the pool),

with P(none of d in the pool) = C(D - d, N - 1) / C(D, N - 1) (the full
pool: [d = 0]). Summed over queries: the expected correct links C(t) and
links L(t), so precision C/L and recall C/n at every t, for every N at once.

d_i(t) is counted in the blocked pass on a grid (:func:`threshold_grid`)
from ``t_low`` up, ``t_low`` the score that about ``cells`` of all scores
reach. Only t > s_i enter the formula, where every such candidate outranks
the truth, so one count serves both levels. Below ``t_low`` the ``low``
points are bounded, not counted (d_i(t_low) <= d_i(t) <= c_i): the links
there are an upper bound and ``links_exact`` is false.

``relinked_best``: the largest expected share of queries re-linked correctly
at a point whose precision (lower bound) reaches the target, a lower bound
of the exact best-t figure; :func:`best_upper` bounds that figure from above
(C and L fall as t rises) and the row's ``ci_high`` is never below it.
``relinked_calibrated``: t set on S labelled pairs (whole patients, drawn
with the audit's seed, held apart) and applied to the rest. Intervals are
patient-clustered (:func:`relink.retrieval.intervals.mean_interval`) over
the per-query correct-link probabilities at the chosen threshold. A random
scorer's precision is its Recall@1 at every t, so its chance figure at a
target above that is 0 (NaN otherwise; ``lift`` is always NaN).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

CURVE_COLUMNS = ("direction", "level", "N", "threshold", "expected_correct", "expected_links", "precision",
                 "recall", "links_exact")
_ROWS = 1 << 14  # queries handled at once (n x thresholds float64 temporaries)


def threshold_grid(truths: np.ndarray, t_low: float, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(counted, low): float32 thresholds from ``t_low`` up, counted per query in the pass, and the points
    below it, both at quantiles of the pooled truth scores ``truths`` (each side holds about ``grid`` / 2 or
    more; every point is a truth score or ``t_low``, so C is exact at every point)."""
    truths = np.sort(np.asarray(truths, dtype=np.float32).reshape(-1))
    hi_part = truths[truths >= t_low]
    lo_part = truths[truths < t_low]
    q = np.linspace(0.0, 1.0, max(2, grid))
    counted = np.unique(np.concatenate([[np.float32(t_low)], np.quantile(hi_part, q, method="inverted_cdf")
                                        if len(hi_part) else []]).astype(np.float32))
    low = (np.unique(np.quantile(lo_part, np.linspace(0.0, 1.0, max(2, grid // 2)), method="inverted_cdf")
                     .astype(np.float32)) if len(lo_part) else np.zeros(0, np.float32))
    return counted, low


def low_threshold(sample_scores: np.ndarray, truths: np.ndarray, cells: float) -> float:
    """The lowest counted threshold: the (1 - ``cells``) quantile of a sample of distractor scores, never
    below the lowest truth score (below it every query links whatever its distractors)."""
    q = float(np.quantile(sample_scores, 1.0 - cells)) if len(sample_scores) else float("inf")
    return float(np.float32(max(q, float(np.min(truths)))))


def best_point(C: np.ndarray, L_high: np.ndarray, target: float) -> int | None:
    """The point with the most expected correct links whose precision (lower bound C / L_high) reaches
    ``target`` (the lowest such threshold on a tie); None when none does."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (L_high > 0) & (C >= target * L_high)
    if not ok.any():
        return None
    cand = np.flatnonzero(ok)
    return int(cand[np.argmax(C[cand])])


def best_upper(C: np.ndarray, L_low: np.ndarray, target: float) -> float:
    """An upper bound of the most expected correct links at any threshold (not only the points) whose exact
    precision reaches ``target``: for t in [t_k, t_k+1), C(t) <= C_k and L(t) >= L_low_k+1; the last point
    is the highest truth score, above which nothing links correctly."""
    best = 0.0
    for k in range(len(C)):
        nxt = L_low[k + 1] if k + 1 < len(C) else L_low[k]
        if C[k] > 0 and C[k] >= target * nxt:
            best = max(best, float(C[k]))
    return best


def calibration_rows(patient: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A bool mask of whole patients holding at least ``size`` queries (fewer when that would take more than
    half of them), drawn with ``seed``: the attacker's labelled set."""
    codes, inverse = np.unique(np.asarray(patient), return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(codes))
    perm = np.random.default_rng(seed).permutation(len(codes))
    total = np.cumsum(counts[perm])
    want = min(size, len(patient) // 2)
    take = perm[: int(np.searchsorted(total, want)) + 1] if want > 0 else perm[:0]
    return np.isin(inverse, take)


# ------------------------------------------------------------------ the audit's rows and curve


def _p_none_upto(pop: int, draws: int, width: int) -> np.ndarray:
    """P(none of d marked candidates among ``draws`` drawn from ``pop``) for d = 0..``width`` - 1 (NaN when
    pop < draws): a table only as long as the queries' counts, not the population."""
    width = max(1, min(int(width), pop + 1))
    if pop < draws:
        return np.full(width, np.nan)
    x = np.arange(width, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        table = np.exp(gammaln(pop - x + 1) - gammaln(np.maximum(pop - x - draws, 0) + 1) - gammaln(pop + 1)
                       + gammaln(pop - draws + 1))
    return np.where(pop - x < draws, 0.0, np.minimum(table, 1.0))


def _by_truth(truth: np.ndarray, thr: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(masks, points): sum of ``weights`` (masks, n) over the queries whose truth clears each threshold."""
    order = np.argsort(truth, kind="stable")
    suffix = np.concatenate([np.cumsum(weights[:, order][:, ::-1], axis=1)[:, ::-1],
                             np.zeros((len(weights), 1))], axis=1)
    return suffix[:, np.searchsorted(truth[order], thr, side="left")]


def _pool_sums(truth, r1, at, above, available, draws, counted, low, masks, chunk: int = _ROWS):
    """Per mask: (C, L_high, L_low, kept) over the queries it selects, at the points ``low`` + ``counted``.

    The sums over the queries of each query's (correct, links) at every point, without (queries x points)
    tables where a per-query value suffices: a correct link and the links below the counted points are one value per query
    where the truth lies below the threshold (and a sure link above it), so they are suffix sums over the
    queries ordered by truth score; only the links at the counted points read the per-query counts, in
    chunks of queries sharing one pool population (one table of P(none) each, as long as their largest count).
    """
    truth = np.asarray(truth, dtype=np.float32)
    r1 = np.asarray(r1, dtype=np.float64)
    counted = np.asarray(counted, dtype=np.float32)
    thr = np.concatenate([low, counted]).astype(np.float32)
    n_low, K = len(low), len(low) + len(counted)
    ok = ~np.isnan(r1)
    weights = np.stack([ok & m for m in masks]).astype(np.float64)  # (masks, n)
    kept = weights.sum(1).astype(np.int64)
    C = _by_truth(truth, thr, weights * np.where(ok, r1, 0.0))
    L_high, L_low = np.zeros((len(masks), K)), np.zeros((len(masks), K))
    # per query, P(some link) where its truth lies below a point under the counted ones: at most with the
    # outranking distractors (``upper``), at least with those at or above the lowest counted point (``lower``)
    upper, lower = np.zeros(len(truth)), np.zeros(len(truth))
    pops, inverse = np.unique(np.asarray(available, dtype=np.int64), return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(pops)))])
    above = np.asarray(above, dtype=np.int64)
    for g, pop in enumerate(pops.tolist()):
        rows = order[bounds[g]:bounds[g + 1]]
        if draws is not None and pop < draws:
            continue  # no such pool: these queries have no r1 (weight 0)
        if draws is not None:  # the counts at the lowest counted point are each query's largest
            table = _p_none_upto(int(pop), int(draws), int(max(above[rows].max(), at[rows, 0].max())) + 1)
            top = len(table) - 1
        for a in range(0, len(rows), chunk):
            idx = rows[a:a + chunk]
            d = np.asarray(at[idx], dtype=np.int64)
            d_up = above[idx]
            if draws is None:
                none_up, none_floor, none_d = d_up <= 0, d[:, 0] <= 0, d <= 0
            else:
                none_up, none_floor = table[np.minimum(d_up, top)], table[np.minimum(d[:, 0], top)]
                none_d = table[np.minimum(d, top)]
            upper[idx], lower[idx] = 1.0 - none_up, 1.0 - none_floor
            # the counted points: a sure link where the truth clears t, else P(some of the d_i(t) in the pool)
            links = np.where(truth[idx][:, None] >= counted[None, :], 1.0, 1.0 - none_d)
            # einsum, not a BLAS product: numpy's threaded BLAS stalls beside torch's threads
            L_high[:, n_low:] += np.einsum("mq,qk->mk", weights[:, idx], links)
    if n_low:
        sure = _by_truth(truth, thr[:n_low], weights)  # the truth itself clears t: a link for sure
        for part, value in ((L_high, upper), (L_low, lower)):
            wv = weights * value
            part[:, :n_low] = sure + (wv.sum(1)[:, None] - _by_truth(truth, thr[:n_low], wv))
    L_low[:, n_low:] = L_high[:, n_low:]  # exact at the counted points
    return [[C[i], L_high[i], L_low[i], int(kept[i])] for i in range(len(masks))]


def confident_tables(conf, idx, patient, codes, n_clusters: int, pools, n: int, spec, recall=None,
                     chunk: int = _ROWS):
    """(rows, curve) of the threshold attacker for the queries ``idx`` of an audit (see the module docstring).

    ``conf``: ``{"counts": ConfidentCounts, "ranks": {(direction, level): RankCounts of random negatives}}``;
    ``patient`` and ``codes`` (patient cluster codes, ``n_clusters`` of them) of the queries summarised;
    ``pools``: the audit's pool sizes (``"full"`` or ints), ``n`` the candidate count; ``recall``: a function
    (direction, level, N) -> the queries' exact Recall@1 over random pools when the summary already holds it
    (None where it does not: computed here, the same values); ``chunk``: queries handled at once.
    """
    import pandas as pd

    from .exact import chance_recall, expected_recall
    from .inputs import FULL
    from .intervals import mean_interval

    cc = conf["counts"]
    thr = np.concatenate([cc.low, cc.counted]).astype(np.float32)
    n_low = len(cc.low)
    cal = calibration_rows(patient, spec.confident_calibration, spec.random_state)
    every = np.ones(len(patient), bool)
    rows, curve = [], []
    for (direction, level), rc in conf["ranks"].items():
        truth = cc.truth[(direction, level)][idx]
        at = cc.at_or_above[direction][idx]
        above, tied, available = rc.above[idx], rc.tied[idx], rc.available[idx]
        for p in pools:
            draws = None if p == FULL else p - 1
            N = n if p == FULL else int(p)
            r1 = recall(direction, level, N) if recall is not None else None
            if r1 is None:
                r1 = expected_recall(above, tied, available, draws, [1], spec.ties)[:, 0]
            (C, Lh, Ll, kept), (Cc, Lhc, _, _), (_, _, _, kept_e) = _pool_sums(
                truth, r1, at, above, available, draws, cc.counted, cc.low, [every, cal, ~cal], chunk)
            with np.errstate(invalid="ignore", divide="ignore"):
                for k in range(len(thr)):
                    curve.append((direction, level, N, float(thr[k]), C[k], Lh[k], C[k] / Lh[k],
                                  C[k] / kept if kept else np.nan, k >= n_low))
            base = dict(direction=direction, negatives="random", level=level, N=N, K=0, estimator="exact")
            ok = ~np.isnan(r1)
            # a random scorer's precision at any threshold is its Recall@1 (the truth set's share of the pool)
            chance_precision = float(chance_recall(rc.truth_size[idx][ok], available[ok] if draws is None else draws,
                                                   [1]).max()) if ok.any() else 1.0
            for target in spec.confident:
                for metric, k, sel, m in (("relinked_best", best_point(C, Lh, target), ok, kept),
                                          ("relinked_calibrated", best_point(Cc, Lhc, target), ok & ~cal, kept_e)):
                    v = np.where(truth >= thr[k], r1, 0.0) if k is not None else np.zeros(len(r1))
                    v = np.where(sel, v, np.nan)
                    kept_v = ~np.isnan(v)
                    value = float(v[kept_v].mean()) if kept_v.any() else np.nan
                    lo_, hi_ = np.nan, np.nan
                    if spec.n_boot and n_clusters > 1 and kept_v.any():
                        sums = np.bincount(codes, weights=np.where(kept_v, v, 0.0), minlength=n_clusters)[:, None]
                        counts = np.bincount(codes, weights=kept_v.astype(np.float64), minlength=n_clusters)[:, None]
                        lo_, hi_ = (float(x[0]) for x in mean_interval(sums, counts, spec.ci))
                    if metric == "relinked_best" and m:
                        # the exact best-threshold figure lies at most here (the points restrict the attacker)
                        hi_ = max(hi_, best_upper(C, Ll, target) / m) if not np.isnan(hi_) else hi_
                    rows.append({**base, "metric": metric, "precision_target": target, "value": value,
                                 "ci_low": lo_, "ci_high": hi_,
                                 "chance": 0.0 if target > chance_precision else np.nan, "lift": np.nan,
                                 "n_queries": int(kept_v.sum()),
                                 "coverage": kept_v.sum() / max(1, int(sel.size if metric == "relinked_best"
                                                                        else (~cal).sum()))})
    return rows, pd.DataFrame(curve, columns=list(CURVE_COLUMNS))
