"""The re-linkage audit: a tidy metric table from an EmbeddingSet or plain arrays.

One row per (direction, negatives, level, N, K, estimator, metric), columns
:data:`relink.tables.METRIC_COLUMNS`:

* ``metric="recall"``: expected Recall@K over random pools of size N (the
  truth plus N - 1 distractors; ``N`` is the candidate count M for the full
  pool); ``estimator="exact"`` (:mod:`relink.retrieval.exact`) or
  ``"monte_carlo"`` (``monte_carlo_pools`` > 0, integer N only;
  :mod:`relink.retrieval.montecarlo`). An integer N above M is an error
  unless ``pools_clip`` drops it (listed in the settings as
  ``pools_dropped``); K above any N is an error.
* ``metric="mrr"`` and ``"median_rank"`` (K = 0, N = M): mean reciprocal rank
  and median rank of the truth in the full pool, random negatives only.
  Outranking and ties are as the engine counts them
  (:mod:`relink.retrieval.engine`); ties are broken by ``ties``.
* ``level``: ``"study"`` (the truth is the query's own pair) or ``"patient"``
  (any pair of the query's patient is a hit; its pools hold N - 1
  distractors of other patients plus all of the patient's pairs).
* ``negatives``: ``"random"``, ``"pathology_matched"`` or
  ``"positive_set_matched"`` (:mod:`relink.retrieval.matching`); hard
  negatives have no full-pool row. A query whose group cannot supply N - 1
  distractors is left out of that N (``coverage`` the fraction kept,
  ``n_queries`` their number). A row with all 14 labels missing is in no
  matched pool and no matched distractor (random pools use it); the settings
  count such rows as ``unlabelled_rows``.
* ``chance``: the metric for a random ranking (K/N for study-level recall;
  1 - C(N-1, K)/C(N-1+m, K) for a patient with m pairs; the expected
  reciprocal rank; for median_rank the median of the pooled null,
  :func:`relink.retrieval.exact.median_rank_chance`). ``lift`` = value /
  chance, chance / value for median_rank (above 1 is better than chance for
  every metric). Random embeddings reproduce every chance (tests/test_chance.py).
* ``ci_low``/``ci_high``: patient-clustered interval at ``ci``
  (:mod:`.intervals`); NaN when ``n_boot`` = 0 or under two patients.

With hard negatives, :data:`PAIRED_COLUMNS` follow: on a matched recall row,
the random-negative exact Recall@K of the *same covered queries* at the same
N, K, direction and level, with its interval and lift (NaN on other rows), so
a matched figure is compared like with like.

Settings (the spec and what the data gave) are in ``frame.attrs["audit"]``.
:func:`audit_queries` makes every per-query count (:class:`QueryValues`) in
one pass; :func:`summarise` turns all queries, or any subset, into the
table without a second pass; :func:`audit` is the two together.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet, RowSource, public_model_name
from ..errors import RelinkError
from .engine import Rows, count_ranks
from .engine.counts import CONFIDENT_CELLS
from .exact import chance_rank, chance_recall, expected_rank, expected_recall, reciprocal_rank
from .pools import FULL, Pools
from .matching import check_labelled, group_summary, label_groups
from .montecarlo import monte_carlo_recall
from .spec import AuditSpec
from .summary import PAIRED_COLUMNS, summarise  # noqa: F401 (part of this module's interface)
from .scale import Scale
from .values import QueryValues


def _seed(random_state, i: int):
    return None if random_state is None else [int(random_state), i]


def _recall_group(rc, draws, ks, ties, mask):
    """Values and chances of Recall@K for every K of one (counts, pool), left out where ``mask``."""
    def make():
        rec = expected_recall(rc.above, rc.tied, rc.available, draws, ks, ties)
        ch = chance_recall(rc.truth_size, rc.available if draws is None else draws, ks)
        return _masked(rec, ch, mask)
    return make


def _masked(value: np.ndarray, chance: np.ndarray, mask: np.ndarray | None):
    if mask is not None:
        value = np.where(mask[:, None], np.nan, value)  # no pathology group: no matched pool
    return value, np.where(np.isnan(value), np.nan, chance)


def audit_queries(es: EmbeddingSet, spec: AuditSpec | None = None, progress: bool = False, *,
                  rows: np.ndarray | None = None, scale: Scale | None = None) -> QueryValues:
    """Per-query values of every (direction, negatives, level, N, K, estimator, metric) of ``spec``.

    ``rows`` (increasing set positions, or a bool mask) audits those rows
    alone, as ``es.subset(rows)`` would, without copying the arrays.
    ``scale`` changes how the product is made, never its counts.
    """
    from .memory import resident

    scale = scale or Scale()
    if progress and not scale.progress:
        scale = replace(scale, progress=True)
    if scale.held_from is None:  # the budget counts from here
        scale = replace(scale, held_from=resident())
    spec = spec or AuditSpec()
    idx = None
    frame = es.rows
    if rows is not None:
        idx = np.asarray(rows)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        frame = es.rows.iloc[idx].reset_index(drop=True)
    n = len(frame)
    if n < 2:
        raise RelinkError(f"{es.where}: an audit needs at least 2 pairs, got {n}")
    pools, dropped = Pools(spec.pools).fit(n, spec.pools_clip)
    ks = Pools(tuple(pools)).check_ks(spec.ks, n)
    patient = frame["patient_id"].to_numpy().astype(str)
    hard = spec.hard
    codes: dict[str, np.ndarray] = {}
    unlabelled = np.zeros(n, dtype=bool)
    if hard:
        from ..labels import CHEXPERT_LABELS

        labels = frame.loc[:, list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64)
        where = f"{es.where}/rows.parquet"
        unlabelled = check_labelled(labels, where)
        codes = label_groups(labels, spec.uncertain, spec.missing)
        del labels
        for g in hard:
            n_groups, alone = group_summary(codes[g], ~unlabelled)
            if alone == n:
                raise RelinkError(f"{where}: every {g} group holds a single pair ({n_groups} groups), so no query "
                                  "has a matched distractor; use random negatives or a looser label policy")
    # The engine works in the order that makes label groups contiguous (its counts come in that order);
    # per-query arrays are returned in the set's own order.
    sources = [RowSource(getattr(es, name), rows=idx) for name in ("image", "text")]
    try:
        counts = count_ranks(Rows(*sources, patient, [(g, codes[g]) for g in hard]), spec, scale)
    finally:
        for s in sources:
            s.close()
    order = counts.order
    patient_o = patient[order]
    unlabelled_o = unlabelled[order] if hard else None
    codes_o = {g: c[order] for g, c in codes.items()}

    keys: list[dict[str, Any]] = []
    groups: list[tuple[list[int], Callable]] = []
    rank_keys, ranks, rank_null = [], [], []
    mc_arrays = None

    def add(new_keys: list[dict[str, Any]], make: Callable) -> None:
        groups.append((list(range(len(keys), len(keys) + len(new_keys))), make))
        keys.extend(new_keys)

    for key_index, ((direction, level, neg), rc) in enumerate(counts.items()):
        # random recall is kept when only hard negatives are asked for: matched rows are paired with it
        if neg not in spec.negatives and not (neg == "random" and hard):
            continue
        base = dict(direction=direction, negatives=neg, level=level)
        mask = unlabelled_o if neg != "random" else None
        for p in pools:
            if p == FULL and neg != "random":
                continue
            draws = None if p == FULL else p - 1
            add([{**base, "N": n if p == FULL else p, "K": k, "estimator": "exact", "metric": "recall"} for k in ks],
                _recall_group(rc, draws, ks, spec.ties, mask))
        if neg not in spec.negatives:
            continue
        int_pools = [p for p in pools if p != FULL]
        if spec.monte_carlo_pools and int_pools:
            if mc_arrays is None:  # the cross-check reads both arrays whole
                at = order if idx is None else idx[order]
                mc_arrays = (es.unit("image", at), es.unit("text", at))
            mc = monte_carlo_recall(*mc_arrays, patient_o, [p - 1 for p in int_pools], ks, spec.monte_carlo_pools,
                                    direction, level, codes_o.get(neg), spec.ties, spec.tie_tol,
                                    _seed(spec.random_state, key_index), device=spec.device)
            for i, p in enumerate(int_pools):
                ch = chance_recall(rc.truth_size, p - 1, ks)
                add([{**base, "N": p, "K": k, "estimator": "monte_carlo", "metric": "recall"} for k in ks],
                    lambda v=mc[:, i], c=ch, m=mask: _masked(v, c, m))
        if neg == "random":
            def mrr(rc=rc):
                return _masked(reciprocal_rank(rc.above, rc.tied, spec.ties)[:, None],
                               chance_rank(rc.truth_size, rc.available)[0][:, None], None)
            add([{**base, "N": n, "K": 0, "estimator": "exact", "metric": "mrr"}], mrr)
            rank_keys.append({**base, "N": n, "K": 0, "estimator": "exact", "metric": "median_rank"})
            ranks.append(expected_rank(rc.above, rc.tied, spec.ties))
            rank_null.append((rc.truth_size, rc.available))

    settings = {**spec.record(), "pools": [str(p) for p in pools], "ks": list(ks), "n_pairs": n,
                "n_patients": int(len(np.unique(patient))), "pools_dropped": dropped,
                "unlabelled_rows": int(unlabelled.sum()) if hard else None,
                "label_groups": {g: dict(zip(("groups", "queries_without_matched_distractor"),
                                             group_summary(codes[g], ~unlabelled))) for g in hard}}
    stack = np.stack(ranks, axis=1) if ranks else np.zeros((n, 0))
    confident = None
    if spec.confident:
        cc = counts.confident
        confident = {"counts": cc, "ranks": {key: counts[(*key, "random")] for key in cc.truth}, "pools": pools}
        settings["confident_thresholds"] = {"counted": len(cc.counted), "below": len(cc.low),
                                            "lowest_counted": float(cc.counted[0]), "cells": CONFIDENT_CELLS}
    return QueryValues(keys, rank_keys=rank_keys, ranks=stack, rank_null=rank_null, patient=patient_o, order=order,
                       spec=spec, settings=settings, groups=groups, confident=confident, run=counts.run)


def audit(es: EmbeddingSet, spec: AuditSpec | None = None, model: str | None = None, cohort: str | None = None,
          progress: bool = False, **changes: Any) -> pd.DataFrame:
    """Audit a validated :class:`~relink.embeddings.EmbeddingSet`; ``changes`` are :class:`AuditSpec` fields
    applied to ``spec``. ``model`` and ``cohort`` default to the set's (never a local path)."""
    spec = (spec or AuditSpec()).but(**changes) if changes else (spec or AuditSpec())
    qv = audit_queries(es, spec, progress=progress)
    if model is None:  # never a local path: see relink.embeddings.public_model_name
        model = public_model_name(es.meta.get("model"), es.meta.get("weights_fingerprint"))
    return summarise(qv, model=model, cohort=es.cohort_name if cohort is None else cohort)


def audit_arrays(image, text, patient_ids, labels=None, spec: AuditSpec | None = None, pair_ids=None,
                 model: str = "", cohort: str = "", progress: bool = False, **changes: Any) -> pd.DataFrame:
    """Audit n aligned pairs given as arrays, validated as a loaded set is: image, text (n, d); patient_ids
    (n,); labels (n, 14) or None."""
    from ..labels import CHEXPERT_LABELS

    n = len(patient_ids)
    rows = pd.DataFrame({"pair_id": pair_ids if pair_ids is not None else np.arange(n).astype(str),
                         "patient_id": np.asarray(patient_ids).astype(object)})
    if labels is not None:
        lab = np.asarray(labels, dtype=np.float64)
        if lab.shape != (n, len(CHEXPERT_LABELS)):
            raise RelinkError(f"labels: expected ({n}, {len(CHEXPERT_LABELS)}) labels, got shape {lab.shape}")
        for j, name in enumerate(CHEXPERT_LABELS):
            rows[name] = lab[:, j]
    es = EmbeddingSet.from_arrays(rows, image, text)
    return audit(es, spec, model=model, cohort=cohort, progress=progress, **changes)
