"""The attacker panel: the same audited rows embedded by several models, the custodian's first, then each public
model an attacker could use. Every set holds exactly the custodian's pairs, re-ordered to its rows (:func:`align`),
so every model is measured on the same queries; the verdict is the most severe over the panel (a release is only
as safe as the best model the attacker can pick).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet, public_model_name
from ..errors import RelinkError


@dataclass(frozen=True)
class Member:
    """One model of the panel: its set (aligned to the custodian's rows), the name the outputs show, and the
    folder named in messages (``where``, never written to an output)."""

    es: EmbeddingSet
    name: str
    where: str


def model_name(es: EmbeddingSet) -> str:
    """The model as outputs name it (spec or architecture with weights fingerprint; never a local path)."""
    return public_model_name(es.meta.get("model"), es.meta.get("weights_fingerprint")) or "model not recorded"


def names(sets: list[EmbeddingSet]) -> list[str]:
    """Distinct display names: a name shared by two sets gets ``(set i)`` after it (1 = the first set)."""
    raw = [model_name(es) for es in sets]
    return [f"{n} (set {i + 1})" if raw.count(n) > 1 else n for i, n in enumerate(raw)]


def _row(positions: np.ndarray | None, i: int) -> int:
    """1-based row of rows.parquet for audited position ``i`` (positions: the audited rows of the file)."""
    return int(positions[i] if positions is not None else i) + 1


def align(base: EmbeddingSet, other: EmbeddingSet, where: str, base_where: str,
          base_positions: np.ndarray | None = None, positions: np.ndarray | None = None) -> tuple[EmbeddingSet, bool]:
    """``other`` re-ordered to ``base``'s rows, and whether it had to be re-ordered. Refused in one line naming the
    row of the file (``positions``: each audited row's row in the file, after a split), never an identifier: another
    number of pairs, a repeated or missing pair, a pair of another patient."""
    want = base.rows["pair_id"].astype(str).to_numpy()
    have = other.rows["pair_id"].astype(str).to_numpy()
    prefix = (f"--embeddings {where}: not the same rows as --embeddings {base_where} (an attacker panel audits one "
              "set of pairs with every model)")
    if len(have) != len(want):
        raise RelinkError(f"{prefix}: it holds {len(have):,} audited pairs, the first set {len(want):,}")
    index = pd.Index(have)
    if not index.is_unique:
        i = int(np.flatnonzero(index.duplicated())[0])
        raise RelinkError(f"{prefix}: row {_row(positions, i)} repeats a pair id of an earlier row")
    order = index.get_indexer(want)
    if (order < 0).any():
        i = int(np.flatnonzero(order < 0)[0])
        raise RelinkError(f"{prefix}: row {_row(base_positions, i)} of the first set has no pair with its pair id")
    same = other.rows["patient_id"].astype(str).to_numpy()[order] == base.rows["patient_id"].astype(str).to_numpy()
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        raise RelinkError(f"{prefix}: row {_row(positions, int(order[i]))} gives its pair another patient than row "
                          f"{_row(base_positions, i)} of the first set")
    moved = not np.array_equal(order, np.arange(len(order)))
    return (other.subset(order) if moved else other), moved


def strongest(members: list[dict[str, Any]], pool: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The attacker model (not the custodian's) that re-links the most images at rank 1, image to report, study
    level, at ``pool``, and that row; None when no attacker model beats the custodian's."""
    def row(m):
        return next(r for r in m["risk"] if r["direction"] == "image_to_report" and r["level"] == "study"
                    and r["N"] == pool and r["K"] == 1)

    own = row(members[0])["expected_images"]
    best = max(members[1:], key=lambda m: row(m)["expected_images"], default=None)
    if best is None or not row(best)["expected_images"] > own:
        return None
    return best, row(best)
