"""Views of one audit pass: pick columns of the per-query values, summarise any subset of rows (every figure on the
page is a summary of some columns over some rows; picking first makes a summary read only those)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..retrieval.audit import QueryValues, summarise


def _matches(key: dict[str, Any], where: dict[str, Any]) -> bool:
    for col, want in where.items():
        have = key.get(col)
        if isinstance(want, (tuple, list, set, frozenset)):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def pick(qv: QueryValues, **where: Any) -> QueryValues:
    """``qv`` restricted to the value columns matching ``where`` (a value or a tuple of allowed values each),
    without its rank columns."""
    idx = [f for f, key in enumerate(qv.keys) if _matches(key, where)]
    n = len(qv)
    return replace(qv, keys=[qv.keys[f] for f in idx], values=qv.values[:, idx], chances=qv.chances[:, idx],
                   rank_keys=[], ranks=np.zeros((n, 0)), rank_null=[])


def table(qv: QueryValues, rows: np.ndarray | None = None, **where: Any) -> pd.DataFrame:
    """The tidy summary of the columns matching ``where`` over set rows ``rows`` (all when None)."""
    return summarise(pick(qv, **where), rows=rows)


def covered(qv: QueryValues, **where: Any) -> np.ndarray:
    """Bool mask, in the set's row order, of the queries the one column matching ``where`` keeps (not NaN)."""
    f = qv.column(**where)
    return qv.in_set_order(~np.isnan(qv.values[:, f]))


def ranks(qv: QueryValues, direction: str, level: str = "study") -> np.ndarray:
    """Each query's expected rank (1 = first) of its truth in the full pool, random negatives, set order."""
    hits = [r for r, key in enumerate(qv.rank_keys)
            if key.get("direction") == direction and key.get("level") == level and key.get("negatives") == "random"]
    if len(hits) != 1:
        raise LookupError(f"expected one rank column for {direction}/{level}, found {len(hits)}")
    return qv.in_set_order(qv.ranks[:, hits[0]])


def rows_of(frame: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows of a summary matching ``where``."""
    mask = np.ones(len(frame), dtype=bool)
    for col, want in where.items():
        values = want if isinstance(want, (tuple, list, set, frozenset)) else (want,)
        mask &= frame[col].isin(values).to_numpy()
    return frame[mask]
