"""Paired contrasts: one metric measured twice on the same queries, compared under one patient bootstrap.

Every comparison relink states (DP heads vs the heads before, DP heads vs
heads trained the same way without DP, matched vs random pools on the rows
the matched pools cover, ...) is made here, so that both sides are always
measured on the same rows and resampled together: a replicate draws patients
with replacement and both means are taken under the same weights.

Contract: ``a`` and ``b`` are per-query values in the same row order (NaN: a
query left out of that side; a query counts only where both sides have a
value), ``clusters`` the patient of each row. ``kind``:

* ``"difference"``: mean(b) - mean(a);
* ``"relative"``: mean(b) / mean(a) - 1 (e.g. -0.25 = a quarter lower);
* ``"ratio"``: mean(b) / mean(a).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .bootstrap import percentile_interval, replicates

KINDS = ("difference", "relative", "ratio")


@dataclass(frozen=True)
class Contrast:
    """A paired contrast and its interval; ``ci_low``/``ci_high`` are NaN when it has no interval."""

    kind: str
    a: float
    b: float
    value: float
    ci_low: float
    ci_high: float
    n_queries: int
    n_patients: int
    level: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def excludes_zero(self) -> bool:
        """True when the interval of the change lies wholly on one side of no change."""
        null = 1.0 if self.kind == "ratio" else 0.0
        return bool(np.isfinite(self.ci_low) and (self.ci_low > null or self.ci_high < null))


def _combine(mean_a, mean_b, kind: str):
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "difference":
            return mean_b - mean_a
        if kind == "relative":
            return mean_b / mean_a - 1.0
        return mean_b / mean_a


def paired_contrast(a, b, clusters, kind: str = "relative", n_boot: int = 1000, random_state=0,
                    level: float = 0.95) -> Contrast:
    """The contrast of ``b`` against ``a`` over the queries both measure, with a paired patient-bootstrap interval.

    Fewer than two patients give no interval (NaN bounds): resampling one
    patient only re-weights its own queries, which says nothing about others.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    clusters = np.asarray(clusters).reshape(-1)
    if not (len(a) == len(b) == len(clusters)):
        raise ValueError("a, b and clusters must have one entry per query")
    both = ~(np.isnan(a) | np.isnan(b))
    a, b, clusters = a[both], b[both], clusters[both]
    n_patients = len(np.unique(clusters))
    mean_a = float(a.mean()) if len(a) else float("nan")
    mean_b = float(b.mean()) if len(b) else float("nan")
    value = float(_combine(mean_a, mean_b, kind))
    low = high = float("nan")
    if n_patients >= 2 and n_boot > 0:
        reps, _ = replicates(np.stack([a, b], axis=1), None, clusters, n_boot, random_state)
        lo, hi = percentile_interval(_combine(reps[:, :1], reps[:, 1:], kind), level)
        low, high = float(lo[0]), float(hi[0])
    return Contrast(kind, mean_a, mean_b, value, low, high, int(len(a)), n_patients, level)


def contrast_of_audits(a, b, kind: str = "relative", rows=None, n_boot: int | None = None, random_state=0,
                       level: float = 0.95, **where) -> Contrast:
    """:func:`paired_contrast` of the one column matching ``where`` in two audits of the same rows.

    ``a`` and ``b`` are :class:`relink.retrieval.values.QueryValues` of one
    EmbeddingSet's rows (same pairs, same row order: the caller checks pair
    ids); ``rows`` optionally restricts to a subset (bool mask or indices in
    the set's row order). ``n_boot`` defaults to ``a``'s audit spec.
    """
    va = a.in_set_order(a.values[:, a.column(**where)])
    vb = b.in_set_order(b.values[:, b.column(**where)])
    patients = a.in_set_order(a.patient)
    if len(va) != len(vb) or not np.array_equal(patients, b.in_set_order(b.patient)):
        raise ValueError("the two audits are not of the same rows")
    if rows is not None:
        va, vb, patients = va[rows], vb[rows], patients[rows]
    boots = a.spec.n_boot if n_boot is None else n_boot
    return paired_contrast(va, vb, patients, kind, boots, random_state, level)
