"""The re-linkage audit: a tidy metric table from an EmbeddingSet or plain arrays.

One row per (direction, negatives, level, N, K, estimator, metric), columns
:data:`relink.tables.METRIC_COLUMNS`:

* ``metric="recall"``: expected Recall@K over random pools of size N (the
  truth plus N - 1 distractors; ``N`` in the table is the candidate count M
  for the full pool). ``estimator="exact"`` comes from
  :mod:`relink.retrieval.exact`; ``"monte_carlo"`` rows (when
  ``monte_carlo_pools`` > 0, integer N only: the full pool has no randomness)
  from :mod:`relink.retrieval.montecarlo`. An integer N larger than M is an
  error, unless ``pools_clip=True`` drops it (with a warning; for small
  cohorts); K larger than any N is an error.
* ``metric="mrr"`` and ``metric="median_rank"`` (K = 0, N = M): mean
  reciprocal rank and median rank of the truth in the full pool, random
  negatives only. Ranks under ties follow ``ties`` (the expected rank for
  ``"random"``).
* Outranking and ties (``tie_tol``, ``ties``): a distractor outranks the
  truth when it scores more than ``tie_tol`` (1e-6) above it; it ties when its
  embedding is identical to the truth's (duplicate reports), and ties are
  broken at random by default (``"pessimistic"``/``"optimistic"`` on request);
  see :mod:`relink.retrieval.counts` and :mod:`relink.retrieval.exact`.
* ``level``: ``"study"`` (the truth is the query's own pair) or ``"patient"``
  (any pair of the query's patient counts as a hit: its pools hold the same
  N - 1 distractors, drawn from other patients, plus all of the patient's
  pairs; ``N`` still names the pool by its distractors + 1; see
  :mod:`relink.retrieval.counts`).
* ``negatives``: ``"random"``, ``"pathology_matched"`` (distractors share the
  query's 14-label vector) or ``"positive_set_matched"`` (same positive
  findings); see :mod:`relink.retrieval.matching`. Hard negatives have no full
  pool row. A query whose group cannot supply N - 1 distractors is left out
  of that N; ``coverage`` is the fraction kept and ``n_queries`` their number.
* ``chance``: the same metric for a random ranking (K/N for study-level
  recall; 1 - C(N-1, K)/C(N-1+m, K) for a patient with m pairs; the expected
  reciprocal rank; for median_rank the median over queries of the expected
  rank). ``lift`` = value / chance, except median_rank where lift = chance /
  value (greater than 1 means better than chance for every metric).
* ``ci_low``/``ci_high``: percentile interval (``ci``, default 95%) from a
  patient-clustered bootstrap over per-query values (:mod:`.bootstrap`), NaN
  when ``n_boot`` = 0.

Settings (pools, ties, tolerance, label policy, seed) are returned in
``frame.attrs["audit"]`` for provenance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS
from ..tables import METRIC_COLUMNS
from .bootstrap import bootstrap_intervals
from .counts import DIRECTIONS, LEVELS, rank_counts, sort_groupings
from .exact import TIES, chance_rank, chance_recall, expected_rank, expected_recall, reciprocal_rank
from .inputs import (FULL, check_choice, check_ks, check_shapes, checked_embeddings, checked_labels, checked_patients,
                     parse_pools)
from .matching import MISSING, UNCERTAIN, check_labelled, group_summary, label_groups
from .montecarlo import monte_carlo_recall

NEGATIVES = ("random", "pathology_matched", "positive_set_matched")
DEFAULT_POOLS = (10, 100, 1000, 10000, FULL)
_ORDER = {"direction": DIRECTIONS, "negatives": NEGATIVES, "level": LEVELS,
          "metric": ("recall", "mrr", "median_rank"), "estimator": ("exact", "monte_carlo")}


def _seed(random_state, i: int):
    return None if random_state is None else [int(random_state), i]


def audit_arrays(
    image,
    text,
    patient_ids,
    labels=None,
    *,
    pools: Sequence = DEFAULT_POOLS,
    ks: Sequence[int] = (1, 5, 10),
    directions: Sequence[str] = DIRECTIONS,
    levels: Sequence[str] = LEVELS,
    negatives: Sequence[str] = ("random",),
    n_boot: int = 1000,
    random_state=0,
    model: str = "",
    cohort: str = "",
    monte_carlo_pools: int = 0,
    pools_clip: bool = False,
    ties: str = "random",
    tie_tol: float = 1e-6,
    uncertain: str = "own",
    missing: str = "negative",
    ci: float = 0.95,
    device=None,
    progress: bool = False,
    pair_ids=None,
    where: tuple[str, str, str] = ("image", "text", "labels"),
) -> pd.DataFrame:
    """Audit n aligned pairs given as arrays: image, text (n, d); patient_ids (n,); labels (n, 14) or None."""
    directions = check_choice(directions, DIRECTIONS, "direction")
    levels = check_choice(levels, LEVELS, "level")
    negatives = check_choice(negatives, NEGATIVES, "negatives")
    check_choice([ties], TIES, "ties policy")
    check_choice([uncertain], UNCERTAIN, "uncertain-labels policy")
    check_choice([missing], MISSING, "missing-labels policy")
    if not 0 < ci < 1:
        raise RelinkError(f"ci must lie in (0, 1), got {ci}")
    if tie_tol < 0:
        raise RelinkError(f"tie_tol must be >= 0, got {tie_tol}")
    if n_boot < 0 or monte_carlo_pools < 0:
        raise RelinkError("n_boot and monte_carlo_pools must be >= 0")
    n = check_shapes(image, text, where[0], where[1])
    pools = parse_pools(pools, n, pools_clip)
    ks = check_ks(ks, pools, n)
    patient = checked_patients(patient_ids, n)
    hard = [g for g in ("positive_set_matched", "pathology_matched") if g in negatives]
    codes: dict[str, np.ndarray] = {}
    if hard:
        labels = checked_labels(labels, n, where[2])
        check_labelled(labels, pair_ids, where[2])
        codes = label_groups(labels, uncertain, missing)
        for g in hard:
            n_groups, alone = group_summary(codes[g])
            if alone == n:
                raise RelinkError(f"{where[2]}: every {g} group holds a single pair ({n_groups} groups), so no query "
                                  "has a matched distractor; use random negatives or a looser label policy")
    # Work in the order that makes label groups contiguous: the embeddings are copied once,
    # normalised straight into it. Per-query arrays stay in that order; only aggregates leave.
    order = sort_groupings([(g, codes[g]) for g in hard], n)[0]
    image, text = checked_embeddings(image, text, where[0], where[1], order=order)
    patient = patient[order]
    codes = {g: c[order] for g, c in codes.items()}
    counts = rank_counts(image, text, patient, [(g, codes[g]) for g in hard], directions, levels,
                         tie_tol=tie_tol, device=device, progress=progress)

    specs, values, chances, ranks = [], [], [], []
    for key_index, ((direction, level, neg), rc) in enumerate(counts.items()):
        if neg not in negatives:
            continue
        base = dict(direction=direction, negatives=neg, level=level)
        for p in pools:
            if p == FULL and neg != "random":
                continue
            draws = None if p == FULL else p - 1
            rec = expected_recall(rc.above, rc.tied, rc.available, draws, ks, ties)
            ch = chance_recall(rc.truth_size, rc.available if draws is None else draws, ks)
            for j, k in enumerate(ks):
                specs.append({**base, "N": n if p == FULL else p, "K": k, "estimator": "exact", "metric": "recall"})
                values.append(rec[:, j])
                chances.append(np.where(np.isnan(rec[:, j]), np.nan, ch[:, j]))
        int_pools = [p for p in pools if p != FULL]
        if monte_carlo_pools and int_pools:
            mc = monte_carlo_recall(image, text, patient, [p - 1 for p in int_pools], ks, monte_carlo_pools,
                                    direction, level, codes.get(neg), ties, tie_tol, _seed(random_state, key_index),
                                    device=device)
            for i, p in enumerate(int_pools):
                ch = chance_recall(rc.truth_size, p - 1, ks)
                for j, k in enumerate(ks):
                    specs.append({**base, "N": p, "K": k, "estimator": "monte_carlo", "metric": "recall"})
                    values.append(mc[:, i, j])
                    chances.append(np.where(np.isnan(mc[:, i, j]), np.nan, ch[:, j]))
        if neg == "random":
            chance_rr, chance_pos = chance_rank(rc.truth_size, rc.available)
            specs.append({**base, "N": n, "K": 0, "estimator": "exact", "metric": "mrr"})
            values.append(reciprocal_rank(rc.above, rc.tied, ties))
            chances.append(chance_rr)
            ranks.append(({**base, "N": n, "K": 0, "estimator": "exact", "metric": "median_rank"},
                          expected_rank(rc.above, rc.tied, ties), chance_pos))

    table = np.stack(values, axis=1)
    rank_table = np.stack([r[1] for r in ranks], 1) if ranks else None
    low, high, r_low, r_high = bootstrap_intervals(table, rank_table, patient, n_boot, random_state, ci)
    rows = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for f, spec in enumerate(specs):
            kept = ~np.isnan(table[:, f])
            value = float(table[kept, f].mean()) if kept.any() else np.nan
            chance = float(np.nanmean(chances[f])) if kept.any() else np.nan
            rows.append({**spec, "value": value, "ci_low": low[f], "ci_high": high[f], "chance": chance,
                         "lift": value / chance, "n_queries": int(kept.sum()), "coverage": kept.sum() / n})
        if ranks:
            for f, (spec, rank, chance_pos) in enumerate(ranks):
                value, chance = float(np.median(rank)), float(np.median(chance_pos))
                rows.append({**spec, "value": value, "ci_low": r_low[f], "ci_high": r_high[f], "chance": chance,
                             "lift": chance / value, "n_queries": n, "coverage": 1.0})
    frame = pd.DataFrame(rows)
    frame.insert(0, "cohort", cohort or "")
    frame.insert(0, "model", model or "")
    sort_keys = {c: frame[c].map({v: i for i, v in enumerate(order)}) for c, order in _ORDER.items()}
    frame = frame.assign(**{f"_{c}": s for c, s in sort_keys.items()})
    frame = frame.sort_values(["_direction", "_negatives", "_level", "_metric", "N", "K", "_estimator"], kind="stable")
    frame = frame[list(METRIC_COLUMNS)].reset_index(drop=True)
    frame["N"] = frame["N"].astype("int64")
    frame["K"] = frame["K"].astype("int64")
    frame["n_queries"] = frame["n_queries"].astype("int64")
    frame.attrs["audit"] = {
        "pools": [str(p) for p in pools], "ks": list(ks), "directions": list(directions), "levels": list(levels),
        "negatives": list(negatives), "n_boot": int(n_boot), "ci": ci, "random_state": random_state,
        "monte_carlo_pools": int(monte_carlo_pools), "ties": ties, "tie_tol": tie_tol,
        "uncertain_labels": uncertain, "missing_labels": missing, "n_pairs": n,
        "n_patients": int(len(np.unique(patient))),
        "label_groups": {g: dict(zip(("groups", "queries_without_matched_distractor"), group_summary(codes[g])))
                         for g in hard},
    }
    return frame


def audit(
    es,
    pools: Sequence = DEFAULT_POOLS,
    ks: Sequence[int] = (1, 5, 10),
    directions: Sequence[str] = DIRECTIONS,
    levels: Sequence[str] = LEVELS,
    negatives: Sequence[str] = ("random",),
    n_boot: int = 1000,
    random_state=0,
    model: str = "",
    cohort: str | None = None,
    monte_carlo_pools: int = 0,
    **options,
) -> pd.DataFrame:
    """Audit a :class:`relink.embeddings.EmbeddingSet` (see the module docstring).

    ``model`` defaults to the set's ``meta.json`` model spec and ``cohort`` to
    its cohort name(s). ``options`` are the keyword options of
    :func:`audit_arrays` (``pools_clip``, ``ties``, ``tie_tol``, ``uncertain``,
    ``missing``, ``ci``, ``device``, ``progress``).
    """
    base = str(es.path) if es.path is not None else "embedding set"
    where = (f"{base}/image.npy", f"{base}/text.npy", f"{base}/rows.parquet")
    missing_cols = [c for c in ("pair_id", "patient_id") if c not in es.rows]
    if missing_cols:
        raise RelinkError(f"{where[2]}: lacks column(s) {', '.join(missing_cols)}")
    if cohort is None:
        cohort = "+".join(sorted(map(str, es.rows["cohort"].dropna().unique()))) if "cohort" in es.rows else ""
    has_labels = all(c in es.rows for c in CHEXPERT_LABELS)
    labels = es.labels() if has_labels and any(g != "random" for g in negatives) else None
    return audit_arrays(
        es.image, es.text, es.rows["patient_id"].to_numpy(), labels,
        pools=pools, ks=ks, directions=directions, levels=levels, negatives=negatives, n_boot=n_boot,
        random_state=random_state, model=model or str(es.meta.get("model", "")), cohort=cohort,
        monte_carlo_pools=monte_carlo_pools, pair_ids=es.rows["pair_id"].to_numpy(), where=where, **options,
    )
