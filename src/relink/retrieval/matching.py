"""Pathology-matched groups: which candidates count as hard negatives for a query.

``labels`` is an (n, 14) float array in the canonical CheXpert order
(:data:`relink.labels.CHEXPERT_LABELS`): 1 positive, 0 negative, -1
uncertain, NaN not mentioned. Two groupings, each (n,) integer codes (equal
code = same group): ``pathology_matched``, the same 14-label vector after
mapping; ``positive_set_matched``, the same set of positive findings after
mapping (looser: every pathology-matched group lies inside one of its groups).

Mapping: ``uncertain`` ``"own"`` keeps -1 a value of its own, ``"negative"``
reads it as 0 (U-zeros), ``"positive"`` as 1 (U-ones); ``missing``
``"negative"`` reads NaN as 0 (a report not mentioning a finding),
``"own"`` keeps it.

A row whose 14 labels are all missing may simply not have been labelled: it
is in no group (a singleton in each grouping), so never a matched distractor
and without one. :func:`check_labelled` returns those rows, and refuses only
a set with no labels at all.
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
    empty = np.isnan(labels).all(axis=1)
    out = {}
    for name, keys in (("pathology_matched", digit @ weights), ("positive_set_matched", positive)):
        codes = _codes(keys)
        # a singleton of its own, numbered after every real group (nesting holds: both are singletons)
        codes[empty] = codes.max(initial=-1) + 1 + np.arange(int(empty.sum()))
        out[name] = _codes(codes)
    return out


def check_labelled(labels: np.ndarray | None, where: str = "labels") -> np.ndarray:
    """Bool mask of the rows with no label value at all; raise when no row has a label."""
    if labels is None:
        raise RelinkError(f"{where}: hard negatives need the 14 CheXpert label columns, and there are none")
    labels = np.asarray(labels, dtype=np.float64)
    empty = np.isnan(labels).all(axis=1)
    if empty.all():
        raise RelinkError(f"{where}: hard negatives requested but every label is missing "
                          f"(columns {CHEXPERT_LABELS[0]!r} ... {CHEXPERT_LABELS[-1]!r} are empty)")
    return empty


def group_summary(codes: np.ndarray, among: np.ndarray | None = None) -> tuple[int, int]:
    """(number of groups, number of queries whose group holds no other pair); ``among`` (a bool mask) counts
    the groups of those rows only, the rows outside it (unlabelled) as queries without a matched distractor."""
    codes = np.asarray(codes)
    among = np.ones(len(codes), dtype=bool) if among is None else np.asarray(among, dtype=bool)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    alone = (counts[inverse] == 1) | ~among
    return len(np.unique(codes[among])), int(alone.sum())
