"""Does the signal survive hard negatives: pathology-matched pools beside random pools on the same queries.

Only queries whose label group holds N - 1 other candidates fill a matched pool (``coverage``), and those are the
common label vectors; so each matched row is set beside random pools on exactly the queries it covers (the audit's
``paired_random_*`` columns when present, else the random columns summarised over the covered rows), never beside
the random figure of all queries. A row no query fills is ``not_computable``; one covering fewer than
``min_cell`` queries is ``suppressed`` (disclosure control: a number exists but is not shown).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..retrieval.audit import QueryValues
from .columns import covered, rows_of, table
from .risk import div

MATCHED = "pathology_matched"
PAIRED = ("paired_random_value", "paired_random_ci_low", "paired_random_ci_high", "paired_random_lift")


def hard_rows(qv: QueryValues, frame: pd.DataFrame, ks: tuple[int, ...], min_cell: int) -> list[dict[str, Any]]:
    """One record per matched (direction, level, N, K) row of ``frame``, random-on-the-same-queries beside it."""
    matched = rows_of(frame, negatives=MATCHED, metric="recall", estimator="exact", K=ks)
    paired_given = all(c in frame.columns for c in PAIRED)
    out = []
    cache: dict[tuple, pd.DataFrame] = {}
    for row in matched.itertuples(index=False):
        rec: dict[str, Any] = {"direction": row.direction, "level": row.level, "N": int(row.N), "K": int(row.K),
                               "coverage": float(row.coverage), "not_computable": bool(row.n_queries == 0),
                               "suppressed": bool(0 < row.n_queries < min_cell)}
        if rec["suppressed"] or rec["not_computable"]:
            out.append(rec)
            continue
        rec.update(n_queries=int(row.n_queries), recall=float(row.value),
                   recall_ci=[float(row.ci_low), float(row.ci_high)], chance=float(row.chance), lift=float(row.lift),
                   lift_ci=[div(row.ci_low, row.chance), div(row.ci_high, row.chance)])
        if paired_given and not math.isnan(float(getattr(row, "paired_random_value"))):
            rnd = {"recall": float(row.paired_random_value),
                   "recall_ci": [float(row.paired_random_ci_low), float(row.paired_random_ci_high)],
                   "lift": float(row.paired_random_lift), "source": "audit paired columns"}
            chance = float(row.chance)  # the same pool size and truth set: the same chance as the matched row
        else:
            key = (row.direction, row.level, int(row.N))
            if key not in cache:
                mask = covered(qv, direction=row.direction, level=row.level, negatives=MATCHED, N=int(row.N),
                               K=int(row.K), estimator="exact", metric="recall")
                cache[key] = table(qv, rows=mask, direction=row.direction, level=row.level, negatives="random",
                                   N=int(row.N), estimator="exact", metric="recall")
            r = rows_of(cache[key], K=int(row.K)).iloc[0]
            rnd = {"recall": float(r.value), "recall_ci": [float(r.ci_low), float(r.ci_high)], "lift": float(r.lift),
                   "source": "random pools over the covered queries"}
            chance = float(r.chance)
        rnd["lift_ci"] = [div(v, chance) for v in rnd["recall_ci"]]
        rec["random_same_queries"] = rnd
        rec["lift_retained"] = div(rec["lift"], rnd["lift"])
        out.append(rec)
    return out
