"""Result ``audit``: re-linkage of every rung on every cohort, both directions, study and patient level.

``audit.parquet``: random pools, every pool and K of the profile. ``contrasts.parquet``
(:func:`.common.contrast_row`): ``rung_vs_first``, per later rung, cohort, direction and N, at K = 1, study
level: the ratio of its Recall@1 (``b``) to the first rung's (``a``) on the same queries (checked by pair id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...retrieval.contrast import paired_contrast
from ..stages import Context, RungSpec, ladder
from . import Result
from .common import audit_rows, audit_spec, contrast_row, finish

CONTRAST_K = 1


def _recall_columns(qv: Any) -> dict[tuple, np.ndarray]:
    """(direction, N) -> each query's Recall@1 in random pools, study level, in the set's row order."""
    out = {}
    for f, key in enumerate(qv.keys):
        if (key["metric"], key["negatives"], key["level"], key["K"]) == ("recall", "random", "study", CONTRAST_K):
            out[(key["direction"], int(key["N"]))] = qv.in_set_order(qv.values[:, f])
    return out


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    first: dict[str, tuple[np.ndarray, np.ndarray, dict[tuple, np.ndarray]]] = {}
    contrasts: list[dict[str, Any]] = []

    def keep(rung: RungSpec, role: str, es, qv) -> None:
        pairs = es.rows["pair_id"].astype(str).to_numpy()
        columns = _recall_columns(qv)
        if role not in first:  # the first rung of the ladder (audited first): the reference
            first[role] = (pairs, qv.in_set_order(qv.patient), columns)
            return
        ref_pairs, patients, ref = first[role]
        if not np.array_equal(ref_pairs, pairs):
            raise ValueError(f"rung {rung.name} was embedded on other {role} rows than the first rung")
        for (direction, n), values in columns.items():
            if (direction, n) not in ref:
                continue
            c = paired_contrast(ref[(direction, n)], values, patients, kind="ratio", n_boot=qv.spec.n_boot)
            contrasts.append(contrast_row(c, contrast="rung_vs_first", rung=rung.index, model=rung.name, role=role,
                                          cohort=str(es.rows["cohort"].iloc[0]), direction=direction,
                                          level="study", N=n, K=CONTRAST_K))

    table = audit_rows(ctx, audit_spec(ctx, levels=("study", "patient")), per_query=keep)
    finish(tmp, ctx, "audit", {"audit.parquet": table, "contrasts.parquet": pd.DataFrame(contrasts)},
           {"ladder": [r.name for r in ladder(ctx)]})


RESULT = Result("audit", build, fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"), source=("retrieval",))
