"""Linear-probe AUROC per CheXpert label: what the embeddings still say about findings.

* targets: positive = label ``1``; negative = ``0`` or missing; uncertain
  (``-1``) per ``uncertain``: ``"exclude"`` (default: left out of that
  label's fit and test), ``"negative"`` (U-Zeros) or ``"positive"`` (U-Ones);
* split: the cohort's own ``train``/``test`` rows (``"cohort"``), else a
  patient-disjoint ``GroupShuffleSplit`` (``"group"``); ``"auto"`` picks the
  first that applies;
* model: ``StandardScaler`` then ``LogisticRegression`` (lbfgs, L2, ``C``);
  each fit records ``converged``;
* macro AUROC: the mean over labels with both classes in both parts
  (``n_labels`` of them).

A converged probe is blind to any invertible linear change of the features,
so it barely moves when only the heads change: it is reported because the
paper reports it, beside utilities that need alignment.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS

UNCERTAIN = ("exclude", "negative", "positive")
SPLITS = ("auto", "cohort", "group")
PROBE_COLUMNS = ("model", "cohort", "heads", "features", "label", "metric", "value", "n_train", "n_test",
                 "n_pos_test", "n_labels", "converged")


def label_targets(labels: np.ndarray, uncertain: str = "exclude") -> tuple[np.ndarray, np.ndarray]:
    """``(y, valid)``, both ``(n, 14)``: 0/1 targets and which cells take part."""
    if uncertain not in UNCERTAIN:
        raise RelinkError(f"uncertain labels: choose one of {', '.join(UNCERTAIN)}, got {uncertain!r}")
    labels = np.asarray(labels, dtype=np.float64)
    unc = labels == -1
    y = (labels == 1) | (unc & (uncertain == "positive"))
    valid = ~unc if uncertain == "exclude" else np.ones_like(unc)
    return y.astype(np.int8), valid


def probe_split(rows: pd.DataFrame, split: str = "auto", test_size: float = 0.3, random_state: int = 0):
    """Row indices ``(train, test)`` for the probe; ``(split_used, train, test)``."""
    if split not in SPLITS:
        raise RelinkError(f"probe split must be one of {', '.join(SPLITS)}, got {split!r}")
    parts = rows["split"].astype(str).to_numpy() if "split" in rows.columns else np.array([""] * len(rows))
    has_cohort = (parts == "train").any() and (parts == "test").any()
    if split == "cohort" and not has_cohort:
        raise RelinkError("probe split 'cohort' needs rows with split == 'train' and split == 'test'")
    if split == "cohort" or (split == "auto" and has_cohort):
        train, test = np.flatnonzero(parts == "train"), np.flatnonzero(parts == "test")
        patients = rows["patient_id"].astype(str).to_numpy()
        shared = np.intersect1d(patients[train], patients[test])
        if len(shared):
            # A patient on both sides lets the probe recognise the patient, not the finding.
            raise RelinkError(f"probe: {len(shared)} patient(s) have rows in both the train and the test split; "
                              "the splits must be patient-disjoint (use --split group for a patient-disjoint split)")
        return "cohort", train, test
    from sklearn.model_selection import GroupShuffleSplit

    groups = rows["patient_id"].astype(str).to_numpy()
    if len(np.unique(groups)) < 2:
        raise RelinkError("a patient-disjoint probe split needs at least 2 patients")
    gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    train, test = next(gss.split(np.zeros(len(rows)), groups=groups))
    return "group", np.sort(train), np.sort(test)


def fit_label(x_train, y_train, x_test, y_test, C: float = 1.0, max_iter: int = 5000, random_state: int = 0):
    """AUROC of one converged logistic probe, or ``(nan, converged)`` when a part has one class."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
        return float("nan"), True
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=random_state))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    converged = bool(np.all(clf[-1].n_iter_ < max_iter))
    return float(roc_auc_score(y_test, clf.decision_function(x_test))), converged


def linear_probe(features: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                 uncertain: str = "exclude", C: float = 1.0, max_iter: int = 5000, random_state: int = 0) -> pd.DataFrame:
    """One row per label (``label``, ``value`` = AUROC, counts, ``converged``) plus a ``macro`` row."""
    x = np.asarray(features, dtype=np.float64)
    y, valid = label_targets(labels, uncertain)
    out = []
    for j, name in enumerate(CHEXPERT_LABELS):
        tr = train_idx[valid[train_idx, j]]
        te = test_idx[valid[test_idx, j]]
        auc, conv = fit_label(x[tr], y[tr, j], x[te], y[te, j], C, max_iter, random_state)
        out.append({"label": name, "metric": "auroc", "value": auc, "n_train": len(tr), "n_test": len(te),
                    "n_pos_test": int(y[te, j].sum()), "n_labels": 1 if np.isfinite(auc) else 0, "converged": conv})
    frame = pd.DataFrame(out)
    used = frame[np.isfinite(frame["value"])]
    macro = {"label": "macro", "metric": "macro_auroc", "value": float(used["value"].mean()) if len(used) else float("nan"),
             "n_train": len(train_idx), "n_test": len(test_idx), "n_pos_test": int(used["n_pos_test"].sum()),
             "n_labels": len(used), "converged": bool(used["converged"].all()) if len(used) else True}
    return pd.concat([frame, pd.DataFrame([macro])], ignore_index=True)


def feature_matrix(es: EmbeddingSet, features: str) -> np.ndarray:
    if features == "projected":
        return np.asarray(es.image, dtype=np.float32)
    if features == "trunk":
        if es.image_trunk is None:
            raise RelinkError(f"{es.path or 'embedding set'}: no image_trunk.npy for --features trunk")
        return np.asarray(es.image_trunk, dtype=np.float32)
    raise RelinkError(f"--features must be projected, trunk or both, got {features!r}")


def probe_embeddings(es: EmbeddingSet, features=("projected", "trunk"), split: str = "auto", uncertain: str = "exclude",
                     C: float = 1.0, max_iter: int = 5000, test_size: float = 0.3, random_state: int = 0) -> pd.DataFrame:
    """Linear-probe table of one EmbeddingSet's image features (columns :data:`PROBE_COLUMNS` + ``split``)."""
    if isinstance(features, str):
        features = (features,)
    used, tr, te = probe_split(es.rows, split, test_size, random_state)
    if len(tr) == 0 or len(te) == 0:
        raise RelinkError(f"{es.path or 'embedding set'}: the probe split left an empty train or test part")
    labels = es.labels()
    frames = []
    for feat in features:
        frame = linear_probe(feature_matrix(es, feat), labels, tr, te, uncertain, C, max_iter, random_state)
        frame.insert(0, "features", feat)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "heads", (es.meta.get("heads") or {}).get("fingerprint", "model"))
    out.insert(0, "cohort", ",".join(sorted(map(str, es.rows["cohort"].unique()))) if len(es) else "")
    out.insert(0, "model", str(es.meta.get("model", "")))
    out["split"] = used
    out["uncertain"] = uncertain
    return out
