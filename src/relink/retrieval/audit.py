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
* ``ci_low``/``ci_high``: percentile interval (``ci``, default 95%) from a
  patient-clustered bootstrap over per-query values (:mod:`.bootstrap`), NaN
  when ``n_boot`` = 0.

Optional columns, present when hard negatives are audited
(:data:`PAIRED_COLUMNS`, after :data:`relink.tables.METRIC_COLUMNS`):
``paired_random_value``, ``paired_random_ci_low``, ``paired_random_ci_high``,
``paired_random_lift``. On a matched-negatives recall row they give the
random-negative Recall@K (exact estimator) of the *same covered queries* at
the same N, K, direction and level, with its interval from the same
bootstrap replicates, so that a matched figure is compared like with like
(the random row of the table averages over every query, including those a
matched pool cannot cover). NaN on every other row.

Settings (the :class:`~relink.retrieval.spec.AuditSpec` and what the data
gave) are returned in ``frame.attrs["audit"]`` for provenance.

Two steps, so that any subset of queries can be summarised without a second
pass over the scores: :func:`audit_queries` computes every per-query value
(:class:`QueryValues`) from one blocked pass; :func:`summarise` turns the
values of all queries, or of a subset (a label group, a view, the queries a
matched pool covers), into the tidy table with patient-bootstrap intervals.
:func:`audit` is the two together. The input is a validated
:class:`~relink.embeddings.EmbeddingSet` (:func:`audit_arrays` makes one from
plain arrays); nothing is checked twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..tables import METRIC_COLUMNS
from .bootstrap import bootstrap_intervals
from .counts import DIRECTIONS, LEVELS, rank_counts, sort_groupings
from .exact import chance_rank, chance_recall, expected_rank, expected_recall, median_rank_chance, reciprocal_rank
from .inputs import FULL, check_ks, parse_pools
from .matching import check_labelled, group_summary, label_groups
from .montecarlo import monte_carlo_recall
from .spec import NEGATIVES, AuditSpec

PAIRED_COLUMNS = ("paired_random_value", "paired_random_ci_low", "paired_random_ci_high", "paired_random_lift")
_ORDER = {"direction": DIRECTIONS, "negatives": NEGATIVES, "level": LEVELS,
          "metric": ("recall", "mrr", "median_rank"), "estimator": ("exact", "monte_carlo")}


@dataclass
class QueryValues:
    """Every per-query value of one audit, in *work order*: work row w is set row ``order[w]``.

    (The audit works with label groups contiguous; keeping its order makes a
    summary of all queries add them up exactly as the one-step audit did.
    :meth:`set_rows` maps set rows to work rows; :meth:`in_set_order` turns a
    per-query array back into the set's row order.)

    ``keys[f]`` names column f (``direction``, ``negatives``, ``level``, ``N``,
    ``K``, ``estimator``, ``metric``); ``values[:, f]`` is each query's value
    (NaN: the query is left out, e.g. a matched pool it cannot fill) and
    ``chances[:, f]`` its chance value. Median-rank columns are kept apart
    (``rank_keys``, ``ranks``: each query's expected rank in the full pool)
    because a median is not a mean of per-query values; ``rank_null`` holds,
    per rank column, each query's ``(truth_size, available)`` from which the
    chance median is computed for whatever subset is summarised. When hard
    negatives are audited, the random-negative exact recall columns are kept
    even if random negatives were not asked for (the matched rows are paired
    with them); :func:`summarise` shows rows of ``spec.negatives`` only.
    """

    keys: list[dict[str, Any]]
    values: np.ndarray
    chances: np.ndarray
    rank_keys: list[dict[str, Any]]
    ranks: np.ndarray
    rank_null: list[tuple[np.ndarray, np.ndarray]]
    patient: np.ndarray
    order: np.ndarray
    spec: AuditSpec
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.patient)

    def set_rows(self, rows: np.ndarray) -> np.ndarray:
        """Work rows of the set rows ``rows`` (a bool mask or indices in set order), ascending."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        inverse = np.empty(len(self.order), dtype=np.int64)
        inverse[self.order] = np.arange(len(self.order))
        return np.sort(inverse[idx])

    def in_set_order(self, a: np.ndarray) -> np.ndarray:
        """A per-query array (work order, first axis) in the set's own row order."""
        out = np.empty_like(a)
        out[self.order] = a
        return out

    def column(self, **where: Any) -> int:
        """Index of the one value column matching ``where`` (e.g. direction=..., N=100, K=1)."""
        hits = [f for f, k in enumerate(self.keys) if all(k.get(c) == v for c, v in where.items())]
        if len(hits) != 1:
            raise LookupError(f"expected one audit column for {where}, found {len(hits)}")
        return hits[0]


def _seed(random_state, i: int):
    return None if random_state is None else [int(random_state), i]


def audit_queries(es: EmbeddingSet, spec: AuditSpec | None = None, progress: bool = False) -> QueryValues:
    """Per-query values of every (direction, negatives, level, N, K, estimator, metric) of ``spec``."""
    spec = spec or AuditSpec()
    n = len(es)
    if n < 2:
        raise RelinkError(f"{es.where}: an audit needs at least 2 pairs, got {n}")
    pools, dropped = parse_pools(spec.pools, n, spec.pools_clip)
    ks = check_ks(spec.ks, pools, n)
    patient = es.rows["patient_id"].to_numpy().astype(str)
    hard = spec.hard
    codes: dict[str, np.ndarray] = {}
    unlabelled = np.zeros(n, dtype=bool)
    if hard:
        labels = es.labels()
        where = f"{es.where}/rows.parquet"
        unlabelled = check_labelled(labels, where)
        codes = label_groups(labels, spec.uncertain, spec.missing)
        for g in hard:
            n_groups, alone = group_summary(codes[g], ~unlabelled)
            if alone == n:
                raise RelinkError(f"{where}: every {g} group holds a single pair ({n_groups} groups), so no query "
                                  "has a matched distractor; use random negatives or a looser label policy")
    # Work in the order that makes label groups contiguous: the embeddings are copied once,
    # normalised straight into it. Per-query arrays are returned in the set's own order.
    order = sort_groupings([(g, codes[g]) for g in hard], n)[0]
    image, text = es.unit("image", order), es.unit("text", order)
    patient_o = patient[order]
    unlabelled_o = unlabelled[order]
    codes_o = {g: c[order] for g, c in codes.items()}
    counts = rank_counts(image, text, patient_o, [(g, codes_o[g]) for g in hard], spec.directions, spec.levels,
                         tie_tol=spec.tie_tol, device=spec.device, progress=progress)

    keys, values, chances = [], [], []
    rank_keys, ranks, rank_null = [], [], []

    def add(key: dict[str, Any], value: np.ndarray, chance: np.ndarray) -> None:
        if key["negatives"] != "random":
            value = np.where(unlabelled_o, np.nan, value)  # no pathology group: no matched pool
        keys.append(key)
        values.append(value)
        chances.append(np.where(np.isnan(value), np.nan, chance))

    for key_index, ((direction, level, neg), rc) in enumerate(counts.items()):
        # random recall is kept when only hard negatives are asked for: matched rows are paired with it
        if neg not in spec.negatives and not (neg == "random" and hard):
            continue
        base = dict(direction=direction, negatives=neg, level=level)
        for p in pools:
            if p == FULL and neg != "random":
                continue
            draws = None if p == FULL else p - 1
            rec = expected_recall(rc.above, rc.tied, rc.available, draws, ks, spec.ties)
            ch = chance_recall(rc.truth_size, rc.available if draws is None else draws, ks)
            for j, k in enumerate(ks):
                add({**base, "N": n if p == FULL else p, "K": k, "estimator": "exact", "metric": "recall"},
                    rec[:, j], ch[:, j])
        if neg not in spec.negatives:
            continue
        int_pools = [p for p in pools if p != FULL]
        if spec.monte_carlo_pools and int_pools:
            mc = monte_carlo_recall(image, text, patient_o, [p - 1 for p in int_pools], ks, spec.monte_carlo_pools,
                                    direction, level, codes_o.get(neg), spec.ties, spec.tie_tol,
                                    _seed(spec.random_state, key_index), device=spec.device)
            for i, p in enumerate(int_pools):
                ch = chance_recall(rc.truth_size, p - 1, ks)
                for j, k in enumerate(ks):
                    add({**base, "N": p, "K": k, "estimator": "monte_carlo", "metric": "recall"}, mc[:, i, j], ch[:, j])
        if neg == "random":
            chance_rr, _ = chance_rank(rc.truth_size, rc.available)
            add({**base, "N": n, "K": 0, "estimator": "exact", "metric": "mrr"},
                reciprocal_rank(rc.above, rc.tied, spec.ties), chance_rr)
            rank_keys.append({**base, "N": n, "K": 0, "estimator": "exact", "metric": "median_rank"})
            ranks.append(expected_rank(rc.above, rc.tied, spec.ties))
            rank_null.append((rc.truth_size, rc.available))

    settings = {**spec.record(), "pools": [str(p) for p in pools], "ks": list(ks), "n_pairs": n,
                "n_patients": int(len(np.unique(patient))), "pools_dropped": dropped,
                "unlabelled_rows": int(unlabelled.sum()) if hard else None,
                "label_groups": {g: dict(zip(("groups", "queries_without_matched_distractor"),
                                             group_summary(codes[g], ~unlabelled))) for g in hard}}
    stack = lambda cols: np.stack(cols, axis=1) if cols else np.zeros((n, 0))  # noqa: E731
    return QueryValues(keys, stack(values), stack(chances), rank_keys, stack(ranks), rank_null, patient_o,
                       order, spec, settings)


def _paired_columns(qv: QueryValues) -> dict[int, int]:
    """Matched recall column -> the random-negative exact recall column at the same direction, level, N and K."""
    random = {(k["direction"], k["level"], k["N"], k["K"]): f for f, k in enumerate(qv.keys)
              if k["metric"] == "recall" and k["negatives"] == "random" and k["estimator"] == "exact"}
    out = {}
    for f, k in enumerate(qv.keys):
        if k["metric"] == "recall" and k["negatives"] != "random":
            r = random.get((k["direction"], k["level"], k["N"], k["K"]))
            if r is not None:
                out[f] = r
    return out


def summarise(qv: QueryValues, rows: np.ndarray | None = None, model: str = "", cohort: str = "",
              n_boot: int | None = None) -> pd.DataFrame:
    """The tidy metric table of ``qv``'s queries, or of the subset ``rows`` of the set (a bool mask or
    indices, in the set's row order).

    Intervals resample the patients of the rows summarised; ``n_boot``
    overrides the spec's replicate count (0: no intervals). Chance values
    (the median-rank one included) and the paired random-negative columns are
    those of the rows summarised.
    """
    spec = qv.spec
    idx = np.arange(len(qv)) if rows is None else qv.set_rows(rows)
    n = len(idx)
    table, chances, rank_table = qv.values[idx], qv.chances[idx], qv.ranks[idx]
    patient = qv.patient[idx]
    boots = spec.n_boot if n_boot is None else n_boot
    # Each matched column's random twin, masked to the queries the matched pool covers; bootstrapped
    # beside the other columns, so under the very same replicates.
    pairs = _paired_columns(qv)
    twins = [np.where(np.isnan(table[:, f]), np.nan, table[:, r]) for f, r in pairs.items()]
    twin_chances = [np.where(np.isnan(table[:, f]), np.nan, chances[:, r]) for f, r in pairs.items()]
    means = np.concatenate([table, np.stack(twins, 1)], axis=1) if twins else table
    low, high, r_low, r_high = bootstrap_intervals(means, rank_table if qv.rank_keys else None, patient, boots,
                                                   spec.random_state, spec.ci)
    paired = {f: j for j, f in enumerate(pairs)}
    shown = set(spec.negatives)
    rows_out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for f, key in enumerate(qv.keys):
            if key["negatives"] not in shown:
                continue
            kept = ~np.isnan(table[:, f])
            value = float(table[kept, f].mean()) if kept.any() else np.nan
            chance = float(np.nanmean(chances[:, f])) if kept.any() else np.nan
            row = {**key, "value": value, "ci_low": low[f], "ci_high": high[f], "chance": chance,
                   "lift": value / chance, "n_queries": int(kept.sum()), "coverage": kept.sum() / n if n else np.nan}
            if f in paired:
                j = paired[f]
                v = float(np.nanmean(twins[j])) if kept.any() else np.nan
                c = float(np.nanmean(twin_chances[j])) if kept.any() else np.nan
                t = table.shape[1] + j
                row.update(paired_random_value=v, paired_random_ci_low=low[t], paired_random_ci_high=high[t],
                           paired_random_lift=v / c)
            rows_out.append(row)
        for f, key in enumerate(qv.rank_keys):
            m, d = qv.rank_null[f]
            value = float(np.median(rank_table[:, f])) if n else np.nan
            chance = median_rank_chance(m[idx], d[idx])
            rows_out.append({**key, "value": value, "ci_low": r_low[f], "ci_high": r_high[f], "chance": chance,
                             "lift": chance / value, "n_queries": n, "coverage": 1.0})
    columns = list(METRIC_COLUMNS) + (list(PAIRED_COLUMNS) if spec.hard else [])
    frame = pd.DataFrame(rows_out, columns=[c for c in columns if c not in ("model", "cohort")])
    frame.insert(0, "cohort", cohort or "")
    frame.insert(0, "model", model or "")
    sort_keys = {c: frame[c].map({v: i for i, v in enumerate(order)}) for c, order in _ORDER.items()}
    frame = frame.assign(**{f"_{c}": s for c, s in sort_keys.items()})
    frame = frame.sort_values(["_direction", "_negatives", "_level", "_metric", "N", "K", "_estimator"], kind="stable")
    frame = frame[columns].reset_index(drop=True)
    for col in ("N", "K", "n_queries"):
        frame[col] = frame[col].astype("int64")
    frame.attrs["audit"] = {**qv.settings, "n_boot": int(boots), "n_queries_summarised": int(n)}
    return frame


def audit(es: EmbeddingSet, spec: AuditSpec | None = None, model: str | None = None, cohort: str | None = None,
          progress: bool = False, **changes: Any) -> pd.DataFrame:
    """Audit a validated :class:`~relink.embeddings.EmbeddingSet` (see the module docstring).

    ``changes`` are :class:`AuditSpec` fields applied to ``spec`` (or to the
    defaults). ``model`` defaults to the set's ``meta.json`` model spec and
    ``cohort`` to :attr:`~relink.embeddings.EmbeddingSet.cohort_name`.
    """
    spec = (spec or AuditSpec()).but(**changes) if changes else (spec or AuditSpec())
    qv = audit_queries(es, spec, progress=progress)
    model = model if model is not None else str(es.meta.get("model", ""))
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
