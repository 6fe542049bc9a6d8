"""Result ``cohorts``: pairs, studies and patients per cohort and split; label prevalence; examples.

Tables: ``summary.parquet`` (cohort, role, split, pairs, studies, patients),
``prevalence.parquet`` (cohort, role, label, positive/uncertain/negative/missing
fractions) and, for synthetic profiles only, ``examples.json`` with three
example images beside their reports (a credentialed profile shows none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...io import write_json
from ...labels import CHEXPERT_LABELS
from ..stages import Context, cohorts
from . import Result
from .common import finish


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...cohort import read_cohort

    summary, prevalence, examples = [], [], []
    for role, path in cohorts(ctx).items():
        if path is None:
            continue
        c = read_cohort(path)
        f = c.frame
        name = str(f["cohort"].iloc[0])
        for split, part in f.groupby("split", sort=True):
            summary.append({"cohort": name, "role": role, "split": split, "pairs": len(part),
                            "studies": part["study_id"].nunique(), "patients": part["patient_id"].nunique()})
        labels = c.labels()
        for j, label in enumerate(CHEXPERT_LABELS):
            col = labels[:, j]
            prevalence.append({"cohort": name, "role": role, "label": label, "positive": float(np.mean(col == 1)),
                               "uncertain": float(np.mean(col == -1)), "negative": float(np.mean(col == 0)),
                               "missing": float(np.mean(np.isnan(col)))})
        if not ctx.profile.credentialed:
            # A deterministic handful of test pairs with at least one positive finding.
            positive = np.flatnonzero((np.nan_to_num(labels[:, 1:], nan=0) == 1).any(axis=1))
            for k, i in enumerate(positive[:: max(1, len(positive) // 3)][:3]):
                target = f"example-{role}-{k}{Path(f['image_path'].iat[i]).suffix}"
                (tmp / target).write_bytes(c.image_file(int(i)).read_bytes())
                examples.append({"cohort": name, "image": target, "report": str(f["report"].iat[i])})
    finish(tmp, ctx, "cohorts", {"summary.parquet": pd.DataFrame(summary), "prevalence.parquet": pd.DataFrame(prevalence)})
    if examples:
        write_json(tmp / "examples.json", examples)


RESULT = Result("cohorts", build, fields=("eval_split", "credentialed"), reads_embeddings=False)
