"""Result ``hard_negatives``: random vs pathology-matched vs positive-set-matched pools, every rung.

``hard_negatives.parquet`` (study level; unlabelled pairs left out for every kind of pool alike).
``contrasts.parquet`` (:func:`.common.contrast_row`): ``matched_vs_random``, per rung, cohort, kind of
matched pool (``negatives``), direction and N, at K = 1: Recall@1 in matched pools (``b``) over random
pools of the same N (``a``) on the queries a matched pool covers (below 1: the share of the signal kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...retrieval.contrast import paired_contrast
from ..stages import Context, RungSpec
from . import Result
from .common import audit_rows, audit_spec, contrast_row, finish

MATCHED = ("pathology_matched", "positive_set_matched")
CONTRAST_K = 1


def matched_vs_random(qv: Any, k: int = CONTRAST_K) -> list[dict[str, Any]]:
    """Matched against random pools on the queries the matched pool covers (a query no matched pool of N
    fills is NaN, and :func:`paired_contrast` keeps the queries both sides measure)."""
    rows = []
    for f, key in enumerate(qv.keys):
        if key["metric"] != "recall" or key["negatives"] not in MATCHED or key["K"] != k:
            continue
        random = qv.column(**{**key, "negatives": "random"})
        c = paired_contrast(qv.values[:, random], qv.values[:, f], qv.patient, kind="ratio", n_boot=qv.spec.n_boot)
        rows.append(contrast_row(c, contrast="matched_vs_random", negatives=key["negatives"],
                                 direction=key["direction"], level=key["level"], N=int(key["N"]), K=int(key["K"])))
    return rows


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    spec = audit_spec(ctx, levels=("study",), negatives=("random", "pathology_matched", "positive_set_matched"))
    contrasts: list[dict[str, Any]] = []

    def keep(rung: RungSpec, role: str, es, qv) -> None:
        labels = {"rung": rung.index, "model": rung.name, "role": role, "cohort": str(es.rows["cohort"].iloc[0])}
        contrasts.extend({**labels, **row} for row in matched_vs_random(qv))

    table = audit_rows(ctx, spec, labelled_only=True, per_query=keep)
    frame = pd.DataFrame(contrasts)
    if len(frame):
        frame["N"] = frame["N"].astype(np.int64)
    finish(tmp, ctx, "hard_negatives", {"hard_negatives.parquet": table, "contrasts.parquet": frame})


RESULT = Result("hard_negatives", build, fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"),
                source=("retrieval",))
