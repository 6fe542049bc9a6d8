"""The 14 CheXpert observations, in the one canonical order every table uses.

Label values follow the CheXpert labeler convention:

* ``1``  positive (mentioned as present),
* ``0``  negative (mentioned as absent),
* ``-1`` uncertain (hedged mention),
* missing (``NaN``): not mentioned at all.

Columns holding them are float (``NaN`` for missing) because pandas has no
integer dtype with a missing value that survives every parquet round trip.
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
