"""The 14 CheXpert observations, in the one canonical order every table uses.

Values follow the CheXpert labeler: ``1`` present, ``0`` absent, ``-1`` uncertain, ``NaN`` not
mentioned. Columns are float: pandas has no integer dtype whose missing value survives every parquet
round trip.
"""

from __future__ import annotations

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: Values a label cell may hold besides missing.
LABEL_VALUES: frozenset[float] = frozenset({1.0, 0.0, -1.0})

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0


def label_value_problem(value) -> str | None:
    """Why one label cell is not 1, 0, -1 or missing, or ``None``: the kind of value, never the value
    (a text cell may hold a piece of a report)."""
    import math

    if value is None:
        return None
    if isinstance(value, bool):
        return "a true/false value"
    if isinstance(value, (int, float)) or hasattr(value, "dtype"):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return "a value that is not a number"
        if math.isnan(v) or v in LABEL_VALUES:
            return None
        return "another number" if math.isfinite(v) else "an infinite number"
    if isinstance(value, str):
        text = value.strip()
        if text == "" or text.lower() in ("nan", "na", "none", "null"):
            return None  # how CSV writers spell a missing cell
        try:
            v = float(text)
        except ValueError:
            return "text"
        return None if v in LABEL_VALUES else "another number"
    return f"a {type(value).__name__} value"


def label_problems(frame, max_problems: int | None = None):
    """``(row, column, kind)`` for each label cell of ``frame`` that breaks the rule, in row order."""
    import numpy as np
    import pandas as pd

    found = []
    for col in CHEXPERT_LABELS:
        if col not in frame.columns:
            continue
        values = frame[col]
        if pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values):
            arr = values.to_numpy(dtype=np.float64)
            bad = ~(np.isnan(arr) | np.isin(arr, list(LABEL_VALUES)))
            found += [(int(i), col, label_value_problem(arr[i])) for i in np.flatnonzero(bad)]
        else:
            for i, v in enumerate(values.to_numpy(dtype=object)):
                kind = label_value_problem(v)
                if kind:
                    found.append((i, col, kind))
    order = {c: j for j, c in enumerate(CHEXPERT_LABELS)}
    found.sort(key=lambda f: (f[0], order[f[1]]))  # row order, then the canonical label order
    return found if max_problems is None else found[:max_problems]
