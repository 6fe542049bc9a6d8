"""Zero-shot AUROC from label prompt pairs: a utility that needs image-text alignment.

Per CheXpert label a pair of prompts ``(absent, present)`` is encoded by the
model's text trunk, projected by the *given* text head and L2-normalised; an
image's score is ``cos(image, present) - cos(image, absent)``, its AUROC taken
against the label (targets as :func:`relink.utility.probe.label_targets`) on
the rows of ``split`` (default ``"test"``; all rows when the set has none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet, l2_normalise
from ..labels import CHEXPERT_LABELS
from .probe import label_targets

#: (absent, present) prompts per label; override by passing ``prompts=``.
PROMPTS: dict[str, tuple[str, str]] = {
    "No Finding": ("abnormal chest radiograph", "no acute cardiopulmonary abnormality"),
    **{name: (f"no {name.lower()}", name.lower()) for name in CHEXPERT_LABELS if name != "No Finding"},
}
PROMPTS["Support Devices"] = ("no support devices", "support devices in place")


def prompt_trunks(loaded, prompts: dict[str, tuple[str, str]] = PROMPTS) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(labels, absent_trunk, present_trunk)`` from the model's text tower (no head)."""
    import torch

    from ..models.trunks import encode_text_trunk

    names = [n for n in CHEXPERT_LABELS if n in prompts]
    texts = [prompts[n][0] for n in names] + [prompts[n][1] for n in names]
    with torch.no_grad():
        trunk = encode_text_trunk(loaded.model, loaded.tokenizer(texts)).float().numpy()
    return names, trunk[:len(names)], trunk[len(names):]


def zeroshot_scores(image: np.ndarray, text_head, absent_trunk: np.ndarray, present_trunk: np.ndarray) -> np.ndarray:
    """``(n, L)`` scores ``cos(image, present) - cos(image, absent)`` through ``text_head``."""
    from ..models.heads import project

    absent = project(text_head, absent_trunk)
    present = project(text_head, present_trunk)
    img = l2_normalise(np.asarray(image, dtype=np.float32))
    return img @ present.T - img @ absent.T


def zeroshot_auroc(es: EmbeddingSet, loaded, text_head=None, prompts: dict[str, tuple[str, str]] = PROMPTS,
                   split: str | None = "test", uncertain: str = "exclude") -> pd.DataFrame:
    """Per-label and macro zero-shot AUROC of ``es``'s image embeddings. ``loaded``: a
    :class:`relink.models.LoadedModel` whose text trunk encodes the prompts; ``text_head``: the head that made
    ``es``'s text rows (default: the model's own)."""
    from sklearn.metrics import roc_auc_score

    if text_head is None:
        from ..models.heads import extract_heads

        text_head = extract_heads(loaded.model).text
    rows = np.arange(len(es))
    if split is not None and (es.rows["split"] == split).any():
        rows = np.flatnonzero(es.rows["split"].to_numpy() == split)
    names, absent, present = prompt_trunks(loaded, prompts)
    scores = zeroshot_scores(np.asarray(es.image)[rows], text_head, absent, present)
    y, valid = label_targets(es.labels()[rows], uncertain)
    out = []
    for k, name in enumerate(names):
        j = CHEXPERT_LABELS.index(name)
        keep = valid[:, j]
        yy = y[keep, j]
        auc = float(roc_auc_score(yy, scores[keep, k])) if len(np.unique(yy)) == 2 else float("nan")
        out.append({"label": name, "metric": "zeroshot_auroc", "value": auc, "n_test": int(keep.sum()),
                    "n_pos_test": int(yy.sum()), "n_labels": int(np.isfinite(auc))})
    frame = pd.DataFrame(out)
    used = frame[np.isfinite(frame["value"])]
    macro = {"label": "macro", "metric": "macro_zeroshot_auroc",
             "value": float(used["value"].mean()) if len(used) else float("nan"), "n_test": len(rows),
             "n_pos_test": int(used["n_pos_test"].sum()), "n_labels": len(used)}
    frame = pd.concat([frame, pd.DataFrame([macro])], ignore_index=True)
    frame.insert(0, "features", "projected")
    frame.insert(0, "heads", (es.meta.get("heads") or {}).get("fingerprint", "model"))
    frame.insert(0, "cohort", ",".join(sorted(map(str, es.rows["cohort"].unique()))) if len(es) else "")
    frame.insert(0, "model", str(es.meta.get("model", loaded.spec)))
    return frame
