"""An empirical privacy audit of one DP run: canaries, one training run, a lower bound on epsilon.

Steinke, Nasr and Jagielski, "Privacy auditing with one (1) training run" (NeurIPS 2023): each of ``m`` canary
pairs joins the private rows with probability 1/2; after one run the auditor guesses "in" for the ``k`` highest
own-pair cosines and "out" for the ``k`` lowest. Under (epsilon, delta)-DP the correct guesses are dominated by a
binomial at ``e^eps / (1 + e^eps)`` (their Theorem 5.2), so the bound is the largest epsilon rejected at 95%
confidence, Bonferroni over a fixed grid of ``k``. A bound above the claimed epsilon means a bug in the mechanism
or its accounting. The canaries are random trunk features (norms matched to the private rows), the easiest to
memorise, so the audit's power does not depend on the cohort.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..embeddings import EmbeddingSet
from .spec import MitigationSpec

CONFIDENCE = 0.95
#: Fractions of the canaries guessed (half "in", half "out"); Bonferroni over this grid.
GUESS_FRACTIONS = (0.1, 0.2, 0.5, 1.0)
FPRS = (0.01, 0.1)


def p_value(m: int, n_guess: int, n_correct: int, epsilon: float, delta: float) -> float:
    """P[at least ``n_correct`` of ``n_guess`` guesses right] under an (epsilon, delta)-DP run with ``m`` canaries:
    the binomial tail at ``q = e^eps / (1 + e^eps)`` plus ``2 m delta`` times the largest average excess tail over
    the last ``i`` correct guesses (Theorem 5.2)."""
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(n_correct - 1, n_guess, q))
    if delta == 0 or n_correct == 0:
        return beta
    i = np.arange(1, n_correct + 1)
    excess = (stats.binom.sf(n_correct - i - 1, n_guess, q) - beta) / i
    return min(1.0, beta + float(np.max(excess)) * 2 * m * delta)


def epsilon_bound(m: int, n_guess: int, n_correct: int, delta: float, significance: float = 1 - CONFIDENCE) -> float:
    """The largest epsilon that ``n_correct`` right out of ``n_guess`` rejects at ``significance`` (0: none)."""
    reject = lambda eps: significance - p_value(m, n_guess, n_correct, eps, delta)  # noqa: E731  > 0: rejected
    if n_guess == 0 or reject(0.0) <= 0:
        return 0.0
    hi = 1.0
    while reject(hi) > 0:
        if hi > 1e3:
            return math.inf
        hi *= 2
    return float(optimize.brentq(reject, 0.0 if hi == 1.0 else hi / 2, hi, xtol=1e-6))


def one_run_bound(scores: np.ndarray, included: np.ndarray, delta: float,
                  confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The audit's bound from canary ``scores`` (higher: more likely in) and the truth ``included``: the largest
    over the guess counts of :data:`GUESS_FRACTIONS`, each at ``significance / len(grid)``, with its guesses."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    m = len(scores)
    order = np.argsort(-scores, kind="stable")
    significance = (1 - confidence) / len(GUESS_FRACTIONS)
    best = {"epsilon_lower_bound": 0.0, "n_guess": 0, "n_correct": 0}
    for f in GUESS_FRACTIONS:
        k = max(1, int(m * f) // 2)
        top, bottom = order[:k], order[m - k:]
        correct = int(included[top].sum() + (~included[bottom]).sum())
        eps = epsilon_bound(m, 2 * k, correct, delta, significance)
        if eps > best["epsilon_lower_bound"] or best["n_guess"] == 0:
            best = {"epsilon_lower_bound": eps, "n_guess": 2 * k, "n_correct": correct}
    return {"m": m, "confidence": confidence, **best}


def threshold_attack(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """TPR of the best score threshold whose false-positive rate is at most ``fpr`` (higher score: member)."""
    out = np.sort(np.asarray(nonmember_scores, float))[::-1]
    allowed = int(math.floor(fpr * len(out) + 1e-9))  # false positives allowed
    # a threshold just above the (allowed+1)-th highest non-member score lets exactly `allowed` through
    threshold = out[allowed] if allowed < len(out) else -np.inf
    return float(np.mean(np.asarray(member_scores, float) > threshold))


def dp_tpr_limit(epsilon: float | None, delta: float | None, fpr: float) -> float:
    """The most TPR an (epsilon, delta)-DP run allows at ``fpr`` (1 without DP)."""
    if epsilon is None:
        return 1.0
    return float(min(1.0, math.exp(epsilon) * fpr + (delta or 0.0)))


def pair_scores(heads, es: EmbeddingSet) -> np.ndarray:
    """Cosine of each row's own image and report under ``heads`` (what re-linkage ranks by)."""
    from ..models.heads import project

    image = project(heads.image, np.asarray(es.image_trunk))
    text = project(heads.text, np.asarray(es.text_trunk))
    image /= np.linalg.norm(image, axis=1, keepdims=True) + 1e-12
    text /= np.linalg.norm(text, axis=1, keepdims=True) + 1e-12
    return np.sum(image * text, axis=1)


def canaries(like: EmbeddingSet, m: int, seed: int) -> EmbeddingSet:
    """``m`` canary pairs with random trunk features of ``like``'s typical norm, each its own patient."""
    rng = np.random.default_rng(seed)
    arrays = []
    for trunk in (np.asarray(like.image_trunk), np.asarray(like.text_trunk)):
        x = rng.standard_normal((m, trunk.shape[1])).astype(np.float32)
        x *= float(np.median(np.linalg.norm(trunk, axis=1))) / np.linalg.norm(x, axis=1, keepdims=True)
        arrays.append(x)
    ids = [f"canary-{i}" for i in range(m)]
    rows = pd.DataFrame({c: (pd.Series([np.nan] * m) if c not in like.rows else like.rows[c].iloc[:0].reindex(range(m)))
                         for c in like.rows.columns})
    rows["pair_id"], rows["patient_id"], rows["split"] = ids, ids, "train"
    if "study_id" in rows:
        rows["study_id"] = ids
    zeros = np.zeros((m, like.image.shape[1]), np.float32)
    return EmbeddingSet(rows, zeros, zeros, arrays[0], arrays[1], {}, None)


def audit_run(train: EmbeddingSet, bank: EmbeddingSet, init, spec: MitigationSpec, m: int,
              seed: int = 0, progress: bool | None = False) -> dict[str, Any]:
    """Train once on ``train`` plus a random half of ``m`` canaries; return the audit record (aggregates only).
    ``seed`` draws the canaries and the coins; the run's noise follows ``spec``."""
    from .train import fit_heads

    canary = canaries(train, m, seed)
    included = np.random.default_rng(seed + 1).random(m) < 0.5
    cols = list(train.rows.columns)
    both = pd.concat([train.rows, canary.rows.loc[included, cols]], ignore_index=True)
    stack = lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)[included]])  # noqa: E731
    run_set = EmbeddingSet(both, stack(train.image, canary.image), stack(train.text, canary.text),
                           stack(train.image_trunk, canary.image_trunk), stack(train.text_trunk, canary.text_trunk),
                           dict(train.meta), None)
    if spec.private:
        from .accounting import default_delta, max_delta
        from .heads_data import make_dataset

        n = len(make_dataset(run_set, spec.privacy_unit))
        if spec.delta > max_delta(n):  # the canaries add units: keep delta within the rule for the audited run
            spec = spec.but(delta=default_delta(n))
    heads, report = fit_heads(run_set, bank, init, spec, progress=progress)
    scores = pair_scores(heads, canary)
    eps = report["epsilon"] if spec.private else None
    delta = spec.delta if spec.private else 0.0
    record = one_run_bound(scores, included, delta or 0.0)
    attack = {}
    for fpr in FPRS:
        attack[f"tpr_at_fpr_{fpr:g}"] = threshold_attack(scores[included], scores[~included], fpr)
        attack[f"dp_limit_at_fpr_{fpr:g}"] = dp_tpr_limit(eps, spec.delta if spec.private else None, fpr)
    return {"claimed_epsilon": eps, "delta": spec.delta if spec.private else None,
            "accountant": report["accountant"], "private": spec.private, "canaries_included": int(included.sum()),
            **record, **attack, "bound_below_claim": None if eps is None else bool(record["epsilon_lower_bound"] <= eps),
            "method": "one-run audit (Steinke, Nasr and Jagielski 2023), Bonferroni over guess counts "
                      f"{list(GUESS_FRACTIONS)}; canaries: random trunk features, scored by their own pair's cosine",
            "note": "an audit of the mechanism on canaries: for study, not for release"}


def run_audit(es: EmbeddingSet, spec: MitigationSpec, *, bank: EmbeddingSet | None = None, model=None,
              canaries: int | None = None, out=None, seed: int = 0) -> dict[str, Any]:
    """`relink mitigate --audit-privacy`: audit one run of ``spec`` on ``es``'s train rows; write audit.json into ``out``."""
    from ..io import atomic_dir, json_safe, mark_output, write_json
    from ..models.heads import extract_heads
    from .heads_data import default_bank, private_split
    from .service import _load
    from .start import random_heads

    train = private_split(es, "train")
    bank = default_bank(es) if bank is None else bank
    loaded, _ = _load(model, es)
    init = random_heads(extract_heads(loaded.model), spec.init_seed)
    m = canaries if canaries is not None else max(2, min(1000, len(train) // 4))
    record = audit_run(train, bank, init, spec, m, seed=seed, progress=None)
    if out is not None:
        with atomic_dir(out) as tmp:
            write_json(tmp / "audit.json", json_safe(record))
            mark_output(tmp, "mitigate")
    return record
