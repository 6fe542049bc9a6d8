"""The tidy metric table of an audit's per-query values (all queries or a subset), in bounded memory.

:func:`summarise` (re-exported by :mod:`relink.retrieval.audit`, where the
table's rows are described) computes each value column from the integer
rank counts as it needs it (:meth:`relink.retrieval.values.QueryValues.column_values`),
never the whole (queries x columns) table: at 200,000 queries the ~60
columns of values and their chances alone would take 200 MB.

The patient bootstrap (:mod:`relink.retrieval.bootstrap`: a replicate is a
multinomial weight per patient, a mean a ratio of weighted per-patient
sums) is made column chunk by column chunk: per-patient sums of at most
``_SUMS_BYTES`` at a time, and for each chunk the replicate weights drawn
again from the same seed, ``_WEIGHT_BYTES`` of them at a time. Every chunk
sees the very same replicates, so intervals are those of one bootstrap of
all columns at once. Chunk sizes follow from the number of patients and
columns only (never from a memory budget), so any run of the same audit
gives the same table. Where the per-patient sums of every column fit in one
chunk (15,000 patients and up to ~100 columns, say) the intervals are
exactly those of :func:`relink.retrieval.bootstrap.bootstrap_intervals`;
chunked ones were equal to them too in every case compared here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np
import pandas as pd

from ..tables import METRIC_COLUMNS
from .blocked import torch_threads
from .bootstrap import _band_medians, _cluster_codes, percentile_interval
from .exact import median_rank_chance
from .inputs import DIRECTIONS, LEVELS
from .spec import NEGATIVES

PAIRED_COLUMNS = ("paired_random_value", "paired_random_ci_low", "paired_random_ci_high", "paired_random_lift")
_SUMS_BYTES = 12 << 20  # per-patient sums and counts of one chunk of columns (float32)
_WEIGHT_BYTES = 8 << 20  # replicate weights drawn at once (float32)
_CACHE_BYTES = 16 << 20  # column groups kept for the twins (recomputed beyond: same values, less memory)
_REPLICATES = 100  # replicate rows per chunk, as relink.retrieval.bootstrap.replicate_weights draws them
_ORDER = {"direction": DIRECTIONS, "negatives": NEGATIVES, "level": LEVELS,
          "metric": ("recall", "mrr", "median_rank"), "estimator": ("exact", "monte_carlo")}


def replicate_weights(n_clusters: int, n_boot: int, random_state=0) -> Iterator[np.ndarray]:
    """The weights of :func:`relink.retrieval.bootstrap.replicate_weights`, drawn one replicate at a time.

    The same random stream gives the same multinomial counts (numpy's
    bounded integers do not depend on how a draw is split), in chunks of
    100 replicates, or fewer when 100 rows of weights exceed ``_WEIGHT_BYTES``.
    """
    rng = np.random.default_rng(random_state)
    rows = max(16, min(_REPLICATES, _WEIGHT_BYTES // max(1, 4 * n_clusters)))
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        w = np.empty((b, n_clusters), dtype=np.float32)
        for r in range(b):
            w[r] = np.bincount(rng.integers(0, n_clusters, size=n_clusters), minlength=n_clusters)
        yield w


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


class _Columns:
    """Values and chances of single columns at rows ``idx`` (positions, or a slice: no copy), the groups
    computed last kept up to ``keep`` bytes (a matched column's random twin is read again when the twins are
    bootstrapped)."""

    def __init__(self, qv, idx: np.ndarray | slice, keep: int = _CACHE_BYTES):
        self.qv, self.idx, self.keep = qv, idx, keep
        self.cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        g, j = self.qv.group_of(f)
        if g not in self.cache:
            values, chances = self.qv.column_values(g)
            self.cache[g] = (values[self.idx], chances[self.idx])
            while len(self.cache) > 1 and sum(v.nbytes + c.nbytes for v, c in self.cache.values()) > self.keep:
                self.cache.popitem(last=False)
        self.cache.move_to_end(g)
        values, chances = self.cache[g]
        return values[:, j], chances[:, j]


def summarise(qv, rows: np.ndarray | None = None, model: str = "", cohort: str = "",
              n_boot: int | None = None) -> pd.DataFrame:
    """The tidy metric table of ``qv``'s queries, or of the subset ``rows`` of the set (a bool mask or
    indices, in the set's row order).

    Intervals resample the patients of the rows summarised; ``n_boot``
    overrides the spec's replicate count (0: no intervals). Chance values
    (the median-rank one included) and the paired random-negative columns are
    those of the rows summarised.
    """
    spec = qv.spec
    # every query: a slice, so that the per-query arrays are read in place, not copied (each column group's
    # values and chances, ~10 MB at 200,000 queries, and the patient and rank columns)
    idx = slice(None) if rows is None else qv.set_rows(rows)
    n = len(qv) if rows is None else len(idx)
    patient = qv.patient[idx]
    rank_table = qv.ranks[idx]
    boots = spec.n_boot if n_boot is None else n_boot
    pairs = _paired_columns(qv)
    paired = {f: j for j, f in enumerate(pairs)}
    n_keys = len(qv.keys)
    # Bootstrap columns: every value column, then each matched column's random twin masked to the queries the
    # matched pool covers (bootstrapped beside the others, so under the very same replicates).
    boot_cols = [(f, None) for f in range(n_keys)] + [(f, r) for f, r in pairs.items()]
    codes, n_clusters = _cluster_codes(patient)
    columns = _Columns(qv, idx)
    stats: dict[int, tuple[float, float, int]] = {}  # boot column -> (mean, chance mean, kept)
    width = max(1, _SUMS_BYTES // max(1, 8 * n_clusters))
    mean_reps = np.full((max(boots, 0) if n_clusters else 0, len(boot_cols)), np.nan)
    median_reps = np.zeros((mean_reps.shape[0], rank_table.shape[1]))
    orders = [np.argsort(rank_table[:, j], kind="stable") for j in range(rank_table.shape[1])]
    chunks = [(j0, min(len(boot_cols), j0 + width)) for j0 in range(0, len(boot_cols), width)] or [(0, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        for c, (j0, j1) in enumerate(chunks):
            f = j1 - j0
            both = np.empty((n_clusters, 2 * f), dtype=np.float32)
            for jj, (col, twin) in enumerate(boot_cols[j0:j1]):
                v, ch = columns.get(col)
                if twin is not None:
                    v, ch = np.where(np.isnan(v), np.nan, columns.get(twin)[0]), np.where(np.isnan(v), np.nan,
                                                                                          columns.get(twin)[1])
                kept = ~np.isnan(v)
                stats[j0 + jj] = (float(v[kept].mean()) if twin is None and kept.any() else
                                  float(np.nanmean(v)) if kept.any() else np.nan,
                                  float(np.nanmean(ch)) if kept.any() else np.nan, int(kept.sum()))
                if n_clusters:
                    both[:, jj] = np.bincount(codes, weights=np.where(kept, v, 0.0), minlength=n_clusters)
                    both[:, f + jj] = np.bincount(codes, weights=kept.astype(np.float64), minlength=n_clusters)
            if not len(mean_reps):
                continue
            _replicates(both, f, j0, c == 0, rank_table, orders, codes, n_clusters, boots, spec.random_state,
                        mean_reps, median_reps)
    low, high = percentile_interval(mean_reps, spec.ci)
    r_low, r_high = percentile_interval(median_reps, spec.ci)
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
    columns_out = list(METRIC_COLUMNS) + (list(PAIRED_COLUMNS) if spec.hard else [])
    frame = pd.DataFrame(rows_out, columns=[c for c in columns_out if c not in ("model", "cohort")])
    frame.insert(0, "cohort", cohort or "")
    frame.insert(0, "model", model or "")
    sort_keys = {c: frame[c].map({v: i for i, v in enumerate(order)}) for c, order in _ORDER.items()}
    frame = frame.assign(**{f"_{c}": s for c, s in sort_keys.items()})
    frame = frame.sort_values(["_direction", "_negatives", "_level", "_metric", "N", "K", "_estimator"], kind="stable")
    frame = frame[columns_out].reset_index(drop=True)
    for col in ("N", "K", "n_queries"):
        frame[col] = frame[col].astype("int64")
    frame.attrs["audit"] = {**qv.settings, "n_boot": int(boots), "n_queries_summarised": int(n)}
    return frame


def _replicates(both: np.ndarray, f: int, j0: int, with_medians: bool, rank_table, orders, codes, n_clusters: int,
                n_boot: int, random_state, mean_reps: np.ndarray, median_reps: np.ndarray) -> None:
    """Replicate means of one column chunk (and, for the first chunk, the medians) into the output arrays."""
    import torch

    sums = torch.from_numpy(both)
    at = 0
    with torch_threads(1):  # small products between numpy steps: spare the numpy steps torch's spinning threads
        for w in replicate_weights(n_clusters, n_boot, random_state):
            b = len(w)
            if f:
                num_den = (torch.from_numpy(w) @ sums).double().numpy()
                mean_reps[at:at + b, j0:j0 + f] = num_den[:, :f] / num_den[:, f:]
            if with_medians:
                for j, o in enumerate(orders):
                    median_reps[at:at + b, j] = _band_medians(rank_table[o, j], codes[o], n_clusters, w)
            at += b
