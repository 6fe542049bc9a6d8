"""Recall@K at one pool size through the retrieval audit (the numbers the DP effects compare).

Pool size: the requested ``N``, or the whole candidate set when it holds
fewer than ``N`` candidates ("the largest pool the set allows"); the table
says which ``N`` was used. ``audit_fn`` defaults to
:func:`relink.retrieval.audit.audit` (an argument so that callers can pass
another estimator with the same contract).
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError

DIRECTION = "image_to_report"


def default_audit() -> Callable:
    from ..retrieval.audit import audit

    return audit


def pool_for(n_candidates: int, N: int) -> int | str:
    """``N`` if the set can fill it, else ``"full"`` (all candidates)."""
    if n_candidates < 2:
        raise RelinkError(f"retrieval needs at least 2 candidates, the set has {n_candidates}")
    return int(N) if N < n_candidates else "full"


def recall_at(es: EmbeddingSet, N: int = 10_000, K: int = 1, direction: str = DIRECTION, n_boot: int = 200,
              random_state: int = 0, audit_fn: Callable | None = None, model: str = "") -> pd.Series:
    """One audit row: Recall@K of ``es`` at pool ``N`` (or full), random negatives, study level."""
    audit_fn = audit_fn or default_audit()
    pool = pool_for(len(es), N)
    table = audit_fn(es, pools=(pool,), ks=(K,), directions=(direction,), levels=("study",), negatives=("random",),
                     n_boot=n_boot, random_state=random_state, model=model)
    sel = table[(table["metric"] == "recall") & (table["K"] == K) & (table["direction"] == direction)
                & (table["negatives"] == "random") & (table["level"] == "study")]
    if pool != "full":
        sel = sel[sel["N"] == pool]
    if len(sel) != 1:
        raise RelinkError(f"the audit returned {len(sel)} rows for Recall@{K} at N={pool} (expected 1)")
    return sel.iloc[0]
