"""Recall@K at one pool size, one row of the audit: the figure before/after comparisons quote.

:func:`recall_at` runs :func:`relink.retrieval.audit.audit` for one pool, one
K, one direction, study level and random negatives, with every other option
(bootstrap replicates, seed, interval level, ties, tolerance, device) taken
from an :class:`~relink.retrieval.spec.AuditSpec`. Pool size: the requested
``N``, or the whole candidate set when it holds no more than ``N`` candidates
("the largest pool the set allows"); the row's ``N`` says which was used.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from .audit import audit
from .inputs import FULL
from .spec import AuditSpec

DIRECTION = "image_to_report"


def pool_for(n_candidates: int, N: int) -> int | str:
    """``N`` if the set can fill it with candidates to spare, else ``"full"`` (all candidates)."""
    if n_candidates < 2:
        raise RelinkError(f"retrieval needs at least 2 candidates, the set has {n_candidates}")
    return int(N) if N < n_candidates else FULL


def recall_at(es: EmbeddingSet, N: int = 10_000, K: int = 1, direction: str = DIRECTION,
              spec: AuditSpec | None = None, model: str = "", **changes: Any) -> pd.Series:
    """One audit row: Recall@K of ``es`` at pool ``N`` (or full), random negatives, study level.

    ``spec`` (default :class:`AuditSpec`) gives the other options; ``changes``
    are AuditSpec fields applied to it (e.g. ``n_boot=200``).
    """
    pool = pool_for(len(es), N)
    spec = (spec or AuditSpec()).but(**changes, pools=(pool,), ks=(K,), directions=(direction,), levels=("study",),
                                     negatives=("random",), monte_carlo_pools=0)
    table = audit(es, spec, model=model)
    sel = table[(table["metric"] == "recall") & (table["estimator"] == "exact")]
    if len(sel) != 1:
        raise RelinkError(f"the audit returned {len(sel)} rows for Recall@{K} at N={pool} (expected 1)")
    return sel.iloc[0]
