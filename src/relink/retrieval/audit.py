"""The re-linkage audit: a tidy metric table from an EmbeddingSet or plain arrays.

One row per (direction, negatives, level, N, K, estimator, metric), columns
:data:`relink.tables.METRIC_COLUMNS`:

* ``metric="recall"``: expected Recall@K over random pools of size N (the
  truth plus N - 1 distractors; ``N`` in the table is the candidate count M
  for the full pool). ``estimator="exact"`` comes from
  :mod:`relink.retrieval.exact`; ``"monte_carlo"`` rows (when
  ``monte_carlo_pools`` > 0, integer N only: the full pool has no randomness)
  from :mod:`relink.retrieval.montecarlo`. An integer N larger than M is an
  error, unless ``pools_clip=True`` drops it (for small cohorts; the dropped
  sizes are listed in the settings as ``pools_dropped`` for the caller to
  mention once); K larger than any N is an error.
* ``metric="mrr"`` and ``metric="median_rank"`` (K = 0, N = M): mean
  reciprocal rank and median rank of the truth in the full pool, random
  negatives only. Ranks under ties follow ``ties`` (the expected rank for
  ``"random"``).
* Outranking and ties: as the engine counts them (:mod:`relink.retrieval.engine`);
  ties with the truth are broken by ``ties`` (at random by default).
* ``level``: ``"study"`` (the truth is the query's own pair) or ``"patient"``
  (any pair of the query's patient counts as a hit: its pools hold the same
  N - 1 distractors, drawn from other patients, plus all of the patient's
  pairs; ``N`` still names the pool by its distractors + 1).
* ``negatives``: ``"random"``, ``"pathology_matched"`` (distractors share the
  query's 14-label vector) or ``"positive_set_matched"`` (same positive
  findings); see :mod:`relink.retrieval.matching`. Hard negatives have no full
  pool row. A query whose group cannot supply N - 1 distractors is left out
  of that N; ``coverage`` is the fraction kept and ``n_queries`` their number.
  A row whose 14 labels are all missing belongs to no pathology group: it is
  never covered by a matched pool (lowering coverage) and never a matched
  distractor, while random pools use every row; the settings count such rows
  as ``unlabelled_rows``.
* ``chance``: the same metric for a random ranking (K/N for study-level
  recall; 1 - C(N-1, K)/C(N-1+m, K) for a patient with m pairs; the expected
  reciprocal rank; for median_rank the median of the pooled null distribution
  of the rank over the queries summarised,
  :func:`relink.retrieval.exact.median_rank_chance`, not the median of
  per-query mean ranks). ``lift`` = value / chance, except median_rank where
  lift = chance / value (greater than 1 means better than chance for every
  metric). Random embeddings reproduce every chance value
  (tests/test_chance.py).
* ``ci_low``/``ci_high``: patient-clustered interval (``ci``, default 95%)
  over per-query values, by a method per metric that a null simulation
  showed to cover (:mod:`.intervals`: an exact binomial interval on the
  design-effect count for recall and MRR, Woodruff's for the median rank);
  NaN when ``n_boot`` = 0 or fewer than two patients are summarised.

Optional columns, present when hard negatives are audited
(:data:`PAIRED_COLUMNS`, after :data:`relink.tables.METRIC_COLUMNS`):
``paired_random_value``, ``paired_random_ci_low``, ``paired_random_ci_high``,
``paired_random_lift``. On a matched-negatives recall row they give the
random-negative Recall@K (exact estimator) of the *same covered queries* at
the same N, K, direction and level, with its interval from the same
interval method, so that a matched figure is compared like with like
(the random row of the table averages over every query, including those a
matched pool cannot cover). NaN on every other row.

Settings (the :class:`~relink.retrieval.spec.AuditSpec` and what the data
gave) are returned in ``frame.attrs["audit"]`` for provenance.

Two steps, so that any subset of queries can be summarised without a second
pass over the scores: :func:`audit_queries` computes every per-query count
(:class:`QueryValues`) from one blocked pass; :func:`summarise`
(:mod:`relink.retrieval.summary`) turns the values of all queries, or of a
subset (a label group, a view, the queries a matched pool covers), into the
tidy table with patient-clustered intervals. :func:`audit` is the two
together. The input is a validated :class:`~relink.embeddings.EmbeddingSet`
(:func:`audit_arrays` makes one from plain arrays); nothing is checked twice.

How the counts are made, in bounded memory, across processes and resumably, is the engine's
(:mod:`relink.retrieval.engine`); Monte Carlo rows, a cross-check for small sets, read both arrays whole.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet, public_model_name
from ..errors import RelinkError
from .engine import Rows, count_ranks
from .engine.counts import CONFIDENT_CELLS
from .exact import chance_rank, chance_recall, expected_rank, expected_recall, reciprocal_rank
from .pools import FULL, Pools
from .matching import check_labelled, group_summary, label_groups
from .montecarlo import monte_carlo_recall
from .spec import AuditSpec
from ..embeddings import RowSource
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
    ``scale`` (:class:`~relink.retrieval.scale.Scale`: memory budget, process
    group, work folder, progress) changes how the product is made, never its
    counts; ``progress`` is ``scale.progress``. The plan and timings of the
    passes are in ``.run`` of the result.
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
    """Audit a validated :class:`~relink.embeddings.EmbeddingSet` (see the module docstring).

    ``changes`` are :class:`AuditSpec` fields applied to ``spec`` (or to the
    defaults). ``model`` defaults to the set's ``meta.json`` model spec (a
    local path replaced by the weights fingerprint) and
    ``cohort`` to :attr:`~relink.embeddings.EmbeddingSet.cohort_name`.
    """
    spec = (spec or AuditSpec()).but(**changes) if changes else (spec or AuditSpec())
    qv = audit_queries(es, spec, progress=progress)
    if model is None:  # never a local path: see relink.embeddings.public_model_name
        model = public_model_name(es.meta.get("model"), es.meta.get("weights_fingerprint"))
    return summarise(qv, model=model, cohort=es.cohort_name if cohort is None else cohort)


def audit_arrays(image, text, patient_ids, labels=None, spec: AuditSpec | None = None, pair_ids=None,
                 model: str = "", cohort: str = "", progress: bool = False, **changes: Any) -> pd.DataFrame:
    """Audit n aligned pairs given as arrays: image, text (n, d); patient_ids (n,); labels (n, 14) or None.

    The arrays are validated as a loaded set is (:meth:`EmbeddingSet.from_arrays`).
    """
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
