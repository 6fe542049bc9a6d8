"""The member gap: do training members re-link better than held-out non-members?

Members are the pairs the heads were fitted on (the ``train`` split),
non-members held-out pairs (``test``). A gap in Recall@K is evidence of
memorisation only if nothing *else* differs between the sides. Audited
within its own split, three things do: the split size (a patient's other
studies, look-alike distractors, fall into a random pool far more often in
a small split, so a small non-member split looks *worse*), the patient
structure (studies per patient), and the case mix (findings change how
distinctive a report is: case mix alone gave a "significant" gap of +0.21).

The design removes all three:

1. **Equal, alike samples.** Both sides are subsampled (seeded, whole
   patients) to the same number of patients per studies-per-patient count
   and case mix (the patient's exact set of positive labels), as many as the
   smaller side has. When exact label vectors keep less than half of what a
   coarser match keeps, the case mix is the number of positive labels (0, 1,
   2, 3+); ``attrs["matched_on"]`` says which.
2. **Own patient out of the distractors.** The truth is the query's own
   report and its distractors the *other patients'* candidates of its side
   (the audit's patient-level "available" set); its other studies are
   neither truth nor distractor. Expected Recall@K over pools of N is exact
   (:func:`relink.retrieval.exact.expected_recall`; chance K/N), with N
   capped so every query fills its pool (N - 1 <= sample pairs - largest
   patient). Not the audit's patient level: there another study of the
   patient ranking first hides memorisation of the pair.

What the gap does not remove: differences the labels do not record (site,
date, image quality); report its interval, not its sign. The gap is members
minus non-members, its interval a patient bootstrap of the two (disjoint)
sides drawn independently. Output: rows ``members``, ``non_members`` and
``gap``, columns :data:`GAP_COLUMNS` (``chance`` 0 for the gap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS
from ..retrieval.bootstrap import percentile_interval, replicates
from ..retrieval.exact import expected_recall
from ..retrieval.spec import AuditSpec

DIRECTION = "image_to_report"
LEVEL = "study_other_patients"  # the ``level`` column: the truth is the study, distractors other patients'
_CELLS = 1 << 24  # score cells per block of queries (64 MB of float32)
GAP_COLUMNS = ("model", "cohort", "heads", "queries", "split", "direction", "level", "N", "K", "value", "ci_low",
               "ci_high", "chance", "n_queries", "n_patients")


#: when exact label vectors keep less than this share of what the number of findings keeps, match on the latter
EXACT_KEEP = 0.5


def case_mix(labels: np.ndarray | None, patient) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its patient's case mix: the exact set of positive labels over its studies, and a coarse one
    (how many labels are positive: 0, 1, 2, 3 or more). ``labels`` None: one case for all."""
    patient = np.asarray(patient).astype(str)
    if labels is None:
        same = np.zeros(len(patient), np.int64)
        return same, same
    positive = pd.DataFrame(np.nan_to_num(np.asarray(labels, float), nan=0.0) == 1.0).groupby(patient).transform("max")
    bits = positive.to_numpy(bool)
    exact = np.unique(np.packbits(bits, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    return exact, np.minimum(bits.sum(axis=1), 3)


def matched_samples(patient_a, patient_b, random_state: int = 0, case_a=None,
                    case_b=None) -> tuple[np.ndarray, np.ndarray]:
    """Ascending row indices of equal-size samples of two sides with the same studies-per-patient (and case-mix)
    distribution: per stratum (pairs per patient, and the case ``case_a`` / ``case_b``, one integer per row,
    when given) both take as many whole patients, drawn seeded, as the smaller side has."""
    rng = np.random.default_rng([int(random_state), 7])
    sides = []
    for patient, case in ((patient_a, case_a), (patient_b, case_b)):
        ids, first, inverse, sizes = np.unique(np.asarray(patient).astype(str), return_index=True,
                                               return_inverse=True, return_counts=True)
        key = sizes.astype(np.int64) if case is None else sizes.astype(np.int64) * 1_000_003 + np.asarray(case)[first]
        sides.append((inverse.reshape(-1), key))
    picked: list[list[np.ndarray]] = [[], []]
    for k in np.intersect1d(sides[0][1], sides[1][1]):
        t = min(int((sides[0][1] == k).sum()), int((sides[1][1] == k).sum()))
        for s, (inverse, keys) in enumerate(sides):
            picked[s].append(rng.choice(np.flatnonzero(keys == k), size=t, replace=False))
    out = []
    for s, (inverse, _) in enumerate(sides):
        chosen = np.concatenate(picked[s]) if picked[s] else np.zeros(0, np.int64)
        out.append(np.flatnonzero(np.isin(inverse, chosen)))
    return out[0], out[1]


def _matched(es: EmbeddingSet, rows_a: np.ndarray, rows_b: np.ndarray, random_state: int):
    """Samples matched on size and case mix: exact label vectors, or the number of findings when exact matching
    keeps less than :data:`EXACT_KEEP` of what that keeps (too fine strata). Returns ``(a, b, matched_on)``."""
    patient = es.rows["patient_id"].astype(str).to_numpy()
    labels = es.labels() if any(c in es.rows for c in CHEXPERT_LABELS) else None
    exact, coarse = case_mix(labels, patient)
    a, b = matched_samples(patient[rows_a], patient[rows_b], random_state, exact[rows_a], exact[rows_b])
    if labels is None:
        return a, b, "studies per patient"
    ca, cb = matched_samples(patient[rows_a], patient[rows_b], random_state, coarse[rows_a], coarse[rows_b])
    if len(a) >= EXACT_KEEP * len(ca):
        return a, b, "studies per patient and label vector"
    return ca, cb, "studies per patient and number of positive labels"


def own_study_counts(es: EmbeddingSet, direction: str = DIRECTION, tie_tol: float = 1e-6,
                     device=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query (set order), int64: other patients' candidates that outrank its own one, tie with it (as the
    engine defines both), and exist: ``(above, tied, available)``."""
    import torch

    from ..retrieval.engine import identical_rows, pick_device

    image, text = es.unit("image"), es.unit("text")
    query, cand = (image, text) if direction == "image_to_report" else (text, image)
    patient = np.unique(es.rows["patient_id"].astype(str).to_numpy(), return_inverse=True)[1].reshape(-1)
    codes = identical_rows(cand)
    n = len(patient)
    truth = np.einsum("ij,ij->i", query, cand)
    above, tied = np.empty(n, np.int64), np.empty(n, np.int64)
    dev = pick_device(device)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would blur the comparisons
    try:
        c = torch.as_tensor(cand, device=dev)
        step = max(1, _CELLS // max(n, 1))
        for a in range(0, n, step):
            rows = slice(a, a + step)
            scores = (torch.as_tensor(query[rows], device=dev) @ c.T).cpu().numpy()
            other = patient[None, :] != patient[rows, None]
            above[rows] = ((scores > truth[rows, None] + tie_tol) & other).sum(1)
            tied[rows] = ((codes[None, :] == codes[rows, None]) & other).sum(1)
    finally:
        torch.set_float32_matmul_precision(precision)
    return above, tied, n - np.bincount(patient)[patient]


def member_gap(es: EmbeddingSet, N: int = 1000, K: int = 1, members: str = "train", nonmembers: str = "test",
               direction: str = DIRECTION, spec: AuditSpec | None = None, **changes: Any) -> pd.DataFrame:
    """Rows ``members``, ``non_members`` and ``gap`` (see the module docstring). ``spec`` gives ``n_boot``,
    ``ci``, ``random_state`` (sampling and bootstrap), ties, tolerance and device; ``changes`` are its fields."""
    spec = (spec or AuditSpec()).but(**changes) if changes else (spec or AuditSpec())
    names = {"members": members, "non_members": nonmembers}
    split = es.rows["split"].astype(str).to_numpy()
    patient = es.rows["patient_id"].astype(str).to_numpy()
    rows_of = {q: np.flatnonzero(split == s) for q, s in names.items()}
    for q, idx in rows_of.items():
        if len(idx) < 2:
            raise RelinkError(f"member gap: the {q.replace('_', '-')} split {names[q]!r} has {len(idx)} rows "
                              "(need at least 2)")
    shared = np.intersect1d(patient[rows_of["members"]], patient[rows_of["non_members"]])
    if len(shared):
        raise RelinkError(f"member gap: {len(shared)} patient(s) have pairs in both the {members!r} and the "
                          f"{nonmembers!r} split; members and non-members must be different patients")
    a, b, matched_on = _matched(es, rows_of["members"], rows_of["non_members"], spec.random_state)
    samples = {"members": es.subset(rows_of["members"][a]), "non_members": es.subset(rows_of["non_members"][b])}
    n_side = len(samples["members"])
    largest = int(samples["members"].rows["patient_id"].value_counts().max()) if n_side else 0
    n_eff = min(int(N), n_side - largest + 1)
    if n_eff < max(2, K):
        raise RelinkError(f"member gap: the {members!r} and {nonmembers!r} splits have too few alike patients "
                          f"({n_side} pairs each after matching studies per patient) for a pool of N={N} at K={K}")
    per_side = {}
    for q, part in samples.items():
        above, tied, available = own_study_counts(part, direction, spec.tie_tol, spec.device)
        v = expected_recall(above, tied, available, n_eff - 1, [K], spec.ties)[:, 0]
        per_side[q] = (v, part.rows["patient_id"].astype(str).to_numpy())
    reps = {q: replicates(v[:, None], pat, spec.n_boot, [spec.random_state, s])[:, 0]
            for s, (q, (v, pat)) in enumerate(per_side.items())}
    reps["gap"] = reps["members"] - reps["non_members"]
    value = {q: float(np.mean(v)) for q, (v, _) in per_side.items()}
    value["gap"] = value["members"] - value["non_members"]
    base = {"model": str(es.meta.get("model", "")), "cohort": es.cohort_name,
            "heads": (es.meta.get("heads") or {}).get("fingerprint", "model"), "direction": direction,
            "level": LEVEL, "N": n_eff, "K": int(K)}
    rows = []
    for q in ("members", "non_members", "gap"):
        low, high = percentile_interval(reps[q][:, None], spec.ci)
        if q == "gap":
            n_q = sum(len(v) for v, _ in per_side.values())
            n_p = sum(len(np.unique(p)) for _, p in per_side.values())
            extra = {"split": f"{members}-{nonmembers}", "chance": 0.0}
        else:
            v, p = per_side[q]
            n_q, n_p = len(v), len(np.unique(p))
            extra = {"split": names[q], "chance": K / n_eff}  # every query: the truth among N at random
        rows.append({**base, **extra, "queries": q, "value": value[q], "ci_low": float(low[0]),
                     "ci_high": float(high[0]), "n_queries": n_q, "n_patients": n_p})
    out = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    out.attrs["matched_on"] = matched_on
    return out
