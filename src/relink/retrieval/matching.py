"""Pathology-matched groups: which candidates count as hard negatives for a query.

Contract. ``labels`` is an (n, 14) float array in the canonical CheXpert order
(:data:`relink.labels.CHEXPERT_LABELS`): 1 positive, 0 negative, -1
uncertain, NaN not mentioned. Two groupings are derived, each an (n,) integer
code (equal code = same group):

* ``pathology_matched`` — the same 14-label vector after mapping;
* ``positive_set_matched`` — the same *set of positive findings* (labels
  equal to 1 after mapping), whatever the others say. It is looser: every
  pathology-matched group lies inside one positive-set group.

Mapping before comparison (options, defaults first):

* ``uncertain``: ``"own"`` keeps -1 as a value of its own (a hedged finding
  matches only a hedged finding); ``"negative"`` reads it as 0 (CheXpert's
  U-zeros); ``"positive"`` as 1 (U-ones, and then it joins the positive set).
* ``missing``: ``"negative"`` reads NaN (not mentioned) as 0, the usual
  reading of a report that does not mention a finding; ``"own"`` keeps it as
  a value of its own.

A row whose 14 labels are all missing carries no pathology at all; with hard
negatives requested it is an error (:func:`check_labelled`) rather than a
silent member of the all-negative group.
"""

from __future__ import annotations

import numpy as np

from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS

UNCERTAIN = ("own", "negative", "positive")
MISSING = ("negative", "own")
HARD_NEGATIVES = ("pathology_matched", "positive_set_matched")


def map_labels(labels: np.ndarray, uncertain: str = "own", missing: str = "negative") -> np.ndarray:
    """Label values after the uncertain/missing policy; NaN kept only for ``missing='own'``."""
    if uncertain not in UNCERTAIN:
        raise RelinkError(f"uncertain labels policy must be one of {', '.join(UNCERTAIN)}, got {uncertain!r}")
    if missing not in MISSING:
        raise RelinkError(f"missing labels policy must be one of {', '.join(MISSING)}, got {missing!r}")
    out = np.array(labels, dtype=np.float64, copy=True)
    if uncertain != "own":
        out[out == -1] = 0.0 if uncertain == "negative" else 1.0
    if missing == "negative":
        out[np.isnan(out)] = 0.0
    return out


def _codes(keys: np.ndarray) -> np.ndarray:
    return np.unique(keys, return_inverse=True)[1].astype(np.int64).reshape(-1)


def label_groups(labels: np.ndarray, uncertain: str = "own", missing: str = "negative") -> dict[str, np.ndarray]:
    """Group codes for ``pathology_matched`` and ``positive_set_matched`` (module docstring)."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != len(CHEXPERT_LABELS):
        raise RelinkError(f"labels must have shape (n, {len(CHEXPERT_LABELS)}), got {labels.shape}")
    mapped = map_labels(labels, uncertain, missing)
    # Base-4 digits: 0, 1, uncertain (2), missing (3); 4**14 fits in int64.
    digit = np.where(np.isnan(mapped), 3, np.where(mapped == -1, 2, mapped)).astype(np.int64)
    weights = 4 ** np.arange(digit.shape[1], dtype=np.int64)
    positive = (mapped == 1).astype(np.int64) @ (2 ** np.arange(digit.shape[1], dtype=np.int64))
    return {"pathology_matched": _codes(digit @ weights), "positive_set_matched": _codes(positive)}


def check_labelled(labels: np.ndarray | None, pair_ids=None, where: str = "labels") -> None:
    """Raise when hard negatives cannot be formed: no labels, or rows with none."""
    if labels is None:
        raise RelinkError(f"{where}: hard negatives need the 14 CheXpert label columns, and there are none")
    labels = np.asarray(labels, dtype=np.float64)
    empty = np.isnan(labels).all(axis=1)
    if empty.all():
        raise RelinkError(f"{where}: hard negatives requested but every label is missing "
                          f"(columns {CHEXPERT_LABELS[0]!r} ... {CHEXPERT_LABELS[-1]!r} are empty)")
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        name = f" (pair_id {str(pair_ids[i])!r})" if pair_ids is not None else ""
        others = int(empty.sum()) - 1
        also = f" (and {others} other row{'s' if others > 1 else ''})" if others else ""
        raise RelinkError(f"{where}: row {i}{name}{also} has no label values, so it belongs to no pathology group; "
                          "drop such rows or audit with random negatives only")


def group_summary(codes: np.ndarray) -> tuple[int, int]:
    """(number of groups, number of queries whose group holds no other pair)."""
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return len(counts), int((counts[inverse] == 1).sum())
