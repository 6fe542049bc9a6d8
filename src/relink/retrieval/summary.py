"""The tidy metric table of an audit's per-query values (all queries or a subset), in bounded memory.

:func:`summarise` (the table's rows: :mod:`relink.retrieval.audit`) computes
each value column from the integer rank counts as it needs it, never the
whole (queries x columns) table. Intervals need only per-patient sums and
counts of each column: they are made column chunk by column chunk, at most
``_SUMS_BYTES`` of sums at a time (less under a small budget:
:func:`working_bytes`). No random draw: chunking cannot change a number.
"""

from __future__ import annotations

from collections import OrderedDict
import numpy as np
import pandas as pd

from ..tables import METRIC_COLUMNS
from .bootstrap import _cluster_codes
from .exact import median_rank_chance
from .intervals import mean_interval, median_interval
from .inputs import DIRECTIONS, LEVELS
from .spec import NEGATIVES

PAIRED_COLUMNS = ("paired_random_value", "paired_random_ci_low", "paired_random_ci_high", "paired_random_lift")
_SUMS_BYTES = 24 << 20  # per-patient sums and counts of one chunk of columns (float64)
_CACHE_BYTES = 16 << 20  # column groups kept for the twins (recomputed beyond: same values, less memory)
_ORDER = {"direction": DIRECTIONS, "negatives": NEGATIVES, "level": LEVELS,
          "metric": ("recall", "mrr", "median_rank", "relinked_best", "relinked_calibrated"),
          "estimator": ("exact", "monte_carlo")}
CONFIDENT_COLUMNS = ("precision_target",)


def _paired_columns(qv) -> dict[int, int]:
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


def working_bytes(qv) -> tuple[int, int, int]:
    """(bytes of per-patient sums, bytes of kept column groups, queries of the threshold attacker's chunks) the
    summary works with: the constants here, less under a small memory budget (a sixteenth of it each), so the
    summary after the pass stays within the budget the pass was planned in (:mod:`relink.retrieval.memory`)."""
    from .confident import _ROWS

    budget = (qv.run or {}).get("memory")
    if not budget:
        return _SUMS_BYTES, _CACHE_BYTES, _ROWS
    share = int(budget) // 16
    conf = qv.confident
    points = len(conf["counts"].counted) + len(conf["counts"].low) if conf is not None else 1
    # the attacker's chunk holds about four (queries x points) arrays of 8 bytes beside the counts it reads
    return (min(_SUMS_BYTES, share), min(_CACHE_BYTES, share),
            max(256, min(_ROWS, share // (40 * max(1, points)))))


def _work_order(qv, boot_cols: list, pairs: dict[int, int]) -> list[int]:
    """The order the interval columns are computed in: each random-negative group of columns, then each
    matched group paired with it followed by its twins, so that a twin finds both groups still kept (the cache
    keeps at least two) instead of computing them again. The order and the chunks change no number."""
    anchor: dict[int, int] = {}

    def key(pos: int):
        col, twin = boot_cols[pos]
        base = twin if twin is not None else pairs.get(col, col)
        a = anchor.setdefault(qv.group_of(base)[0], len(anchor))
        own = -1 if twin is None and col not in pairs else qv.group_of(col)[0]
        return a, own, int(twin is not None), pos

    keys = [key(pos) for pos in range(len(boot_cols))]  # anchors numbered in the columns' own order
    return sorted(range(len(boot_cols)), key=keys.__getitem__)


class _Columns:
    """Values and chances of single columns at rows ``idx`` (positions, or a slice: no copy), the groups
    computed last kept up to ``keep`` bytes, and at least two (a matched column's random twin is read again
    when the twins are summarised)."""

    def __init__(self, qv, idx: np.ndarray | slice, keep: int = _CACHE_BYTES):
        self.qv, self.idx, self.keep = qv, idx, keep
        self.cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def peek(self, f: int) -> np.ndarray | None:
        """Values of column ``f`` if its group is still kept, else None (nothing computed)."""
        g, j = self.qv.group_of(f)
        return self.cache[g][0][:, j] if g in self.cache else None

    def get(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        g, j = self.qv.group_of(f)
        if g not in self.cache:
            values, chances = self.qv.column_values(g)
            self.cache[g] = (values[self.idx], chances[self.idx])
            while len(self.cache) > 2 and sum(v.nbytes + c.nbytes for v, c in self.cache.values()) > self.keep:
                self.cache.popitem(last=False)
        self.cache.move_to_end(g)
        values, chances = self.cache[g]
        return values[:, j], chances[:, j]


def summarise(qv, rows: np.ndarray | None = None, model: str = "", cohort: str = "",
              n_boot: int | None = None) -> pd.DataFrame:
    """The tidy metric table of ``qv``'s queries, or of the subset ``rows`` of the set (a bool mask or
    indices, in the set's row order); chances, intervals and paired columns are those of the rows summarised.
    ``n_boot`` overrides the spec's (0: no intervals)."""
    spec = qv.spec
    # every query: a slice, so that the per-query arrays are read in place, not copied
    idx = slice(None) if rows is None else qv.set_rows(rows)
    n = len(qv) if rows is None else len(idx)
    patient = qv.patient[idx]
    rank_table = qv.ranks[idx]
    boots = spec.n_boot if n_boot is None else n_boot  # 0: no intervals
    pairs = _paired_columns(qv)
    paired = {f: j for j, f in enumerate(pairs)}
    n_keys = len(qv.keys)
    # Interval columns: every value column, then each matched column's random twin masked to the queries the
    # matched pool covers (so a matched figure and its twin rest on the same queries).
    boot_cols = [(f, None) for f in range(n_keys)] + [(f, r) for f, r in pairs.items()]
    codes, n_clusters = _cluster_codes(patient)
    sums_bytes, cache_bytes, confident_rows = working_bytes(qv)
    columns = _Columns(qv, idx, cache_bytes)
    stats: dict[int, tuple[float, float, int]] = {}  # boot column -> (mean, chance mean, kept)
    width = max(1, sums_bytes // max(1, 16 * n_clusters))
    low, high = np.full(len(boot_cols), np.nan), np.full(len(boot_cols), np.nan)
    intervals = boots > 0 and n_clusters > 0
    work = _work_order(qv, boot_cols, pairs)
    chunks = [work[j0:j0 + width] for j0 in range(0, len(work), width)]
    with np.errstate(invalid="ignore", divide="ignore"):
        for slots in chunks:
            f = len(slots)
            sums = np.zeros((n_clusters, f))
            counts = np.zeros((n_clusters, f))
            for jj, slot in enumerate(slots):
                col, twin = boot_cols[slot]
                v, ch = columns.get(col)
                if twin is not None:
                    v, ch = np.where(np.isnan(v), np.nan, columns.get(twin)[0]), np.where(np.isnan(v), np.nan,
                                                                                          columns.get(twin)[1])
                kept = ~np.isnan(v)
                stats[slot] = (float(v[kept].mean()) if twin is None and kept.any() else
                                  float(np.nanmean(v)) if kept.any() else np.nan,
                                  float(np.nanmean(ch)) if kept.any() else np.nan, int(kept.sum()))
                if intervals:
                    sums[:, jj] = np.bincount(codes, weights=np.where(kept, v, 0.0), minlength=n_clusters)
                    counts[:, jj] = np.bincount(codes, weights=kept.astype(np.float64), minlength=n_clusters)
            if intervals:
                low[slots], high[slots] = mean_interval(sums, counts, spec.ci)
    r_low, r_high = np.full(rank_table.shape[1], np.nan), np.full(rank_table.shape[1], np.nan)
    if intervals:
        for j in range(rank_table.shape[1]):
            r_low[j], r_high[j] = median_interval(rank_table[:, j], codes, n_clusters, spec.ci)
    shown = set(spec.negatives)
    rows_out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for f, key in enumerate(qv.keys):
            if key["negatives"] not in shown:
                continue
            value, chance, kept = stats[f]
            row = {**key, "value": value, "ci_low": low[f], "ci_high": high[f], "chance": chance,
                   "lift": value / chance, "n_queries": kept, "coverage": kept / n if n else np.nan}
            if f in paired:
                t = n_keys + paired[f]
                v, c_, _ = stats[t]
                row.update(paired_random_value=v, paired_random_ci_low=low[t], paired_random_ci_high=high[t],
                           paired_random_lift=v / c_)
            rows_out.append(row)
        for f, key in enumerate(qv.rank_keys):
            m, d = qv.rank_null[f]
            value = float(np.median(rank_table[:, f])) if n else np.nan
            chance = median_rank_chance(m[idx], d[idx])
            rows_out.append({**key, "value": value, "ci_low": r_low[f], "ci_high": r_high[f], "chance": chance,
                             "lift": chance / value, "n_queries": n, "coverage": 1.0})
    if qv.confident is not None:
        rows_out.extend(confident_curve(qv, rows, _frame=True, _recall=_recall_at_1(qv, columns),
                                        _chunk=confident_rows))
    columns_out = (list(METRIC_COLUMNS) + (list(PAIRED_COLUMNS) if spec.hard else [])
                   + (list(CONFIDENT_COLUMNS) if qv.confident is not None else []))
    frame = pd.DataFrame(rows_out, columns=[c for c in columns_out if c not in ("model", "cohort")])
    frame.insert(0, "cohort", cohort or "")
    frame.insert(0, "model", model or "")
    sort_keys = {c: frame[c].map({v: i for i, v in enumerate(order)}) for c, order in _ORDER.items()}
    frame = frame.assign(**{f"_{c}": s for c, s in sort_keys.items()})
    frame = frame.sort_values(["_direction", "_negatives", "_level", "_metric", "N", "K", "_estimator"]
                              + (["precision_target"] if qv.confident is not None else []), kind="stable")
    frame = frame[columns_out].reset_index(drop=True)
    for col in ("N", "K", "n_queries"):
        frame[col] = frame[col].astype("int64")
    frame.attrs["audit"] = {**qv.settings, "n_boot": int(boots), "n_queries_summarised": int(n)}
    return frame


def _recall_at_1(qv, columns: _Columns):
    """(direction, level, N) -> the summarised queries' exact random-pool Recall@1 column (the threshold
    attacker's P(correct link) where the truth clears the threshold) while the summary still keeps it, else
    None (the attacker's table computes it: a group of columns costs more than the one column it needs)."""
    where = {(k["direction"], k["level"], k["N"]): f for f, k in enumerate(qv.keys)
             if k["metric"] == "recall" and k["negatives"] == "random" and k["estimator"] == "exact" and k["K"] == 1}

    def lookup(direction: str, level: str, N: int):
        f = where.get((direction, level, N))
        return None if f is None else columns.peek(f)

    return lookup


def confident_curve(qv, rows: np.ndarray | None = None, _frame: bool = False, _recall=None, _chunk=None):
    """The threshold attacker's precision-recall curve (:data:`relink.retrieval.confident.CURVE_COLUMNS`) of
    ``qv``'s queries or of the subset ``rows``; None when the audit did not count it (``confident`` empty).
    Computed once per subset and kept with ``qv``."""
    from .confident import confident_tables

    if qv.confident is None:
        return [] if _frame else None
    key = None if rows is None else np.asarray(rows).tobytes()
    cache = qv.confident.setdefault("cache", {})
    if key not in cache:
        idx = slice(None) if rows is None else qv.set_rows(rows)
        patient = qv.patient[idx]
        codes, n_clusters = _cluster_codes(patient)
        cache.clear()  # one subset at a time: the tables are small, the keys need not pile up
        cache[key] = confident_tables(qv.confident, idx, patient, codes, n_clusters, qv.confident["pools"],
                                      len(qv), qv.spec, recall=_recall,
                                      chunk=_chunk if _chunk is not None else working_bytes(qv)[2])
    table_rows, curve = cache[key]
    return list(table_rows) if _frame else curve.copy()
