"""The member gap: how much better training members re-link than held-out non-members.

Recall@K at the same pool size ``N`` for queries from the training split
(members: the pairs the heads were fitted on) and from the test split
(non-members), each retrieved among candidates of its own split, so that
chance (1/N) is equal. ``N`` is capped at the smaller split's size. A gap
near zero means the heads re-link non-members as well as members: the
linkage risk is a property of the model, not memorisation of its training
pairs; DP training bounds the members' excess, not the general alignment.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from .recall import DIRECTION, recall_at

GAP_COLUMNS = ("model", "cohort", "heads", "queries", "split", "direction", "N", "K", "value", "ci_low", "ci_high",
               "chance", "n_queries")


def member_gap(es: EmbeddingSet, N: int = 1000, K: int = 1, members: str = "train", nonmembers: str = "test",
               direction: str = DIRECTION, n_boot: int = 200, random_state: int = 0,
               audit_fn: Callable | None = None) -> pd.DataFrame:
    """Rows ``members``, ``non_members`` and ``gap`` (members minus non-members; no CI)."""
    parts = {"members": es.split(members), "non_members": es.split(nonmembers)}
    for name, part in parts.items():
        if len(part) < 2:
            raise RelinkError(f"member gap: {name} split {members if name == 'members' else nonmembers!r} has "
                              f"{len(part)} rows (need at least 2)")
    n_eff = min(N, len(parts["members"]), len(parts["non_members"]))
    heads = (es.meta.get("heads") or {}).get("fingerprint", "model")
    cohort = ",".join(sorted(map(str, es.rows["cohort"].unique())))
    rows = []
    for name, part in parts.items():
        # Equal pools (n_eff, or the whole split when that is n_eff) make chance equal.
        r = recall_at(part, n_eff, K, direction, n_boot, random_state, audit_fn)
        rows.append({"queries": name, "split": members if name == "members" else nonmembers, "N": int(r["N"]),
                     "value": float(r["value"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                     "chance": float(r["chance"]), "n_queries": int(r["n_queries"])})
    if rows[0]["N"] != rows[1]["N"]:
        raise RelinkError(f"member gap: pools differ ({rows[0]['N']} vs {rows[1]['N']})")
    rows.append({"queries": "gap", "split": f"{members}-{nonmembers}", "N": rows[0]["N"],
                 "value": rows[0]["value"] - rows[1]["value"], "ci_low": float("nan"), "ci_high": float("nan"),
                 "chance": 0.0, "n_queries": rows[0]["n_queries"] + rows[1]["n_queries"]})
    frame = pd.DataFrame(rows)
    frame.insert(0, "heads", heads)
    frame.insert(0, "cohort", cohort)
    frame.insert(0, "model", str(es.meta.get("model", "")))
    frame.insert(5, "direction", direction)
    frame.insert(7, "K", K)
    return frame[list(GAP_COLUMNS)]
