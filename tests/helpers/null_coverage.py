"""Null simulation of the audit's intervals: random unit embeddings, where every lift is 1 by construction.

Each seed draws a set of patients with 1-4 studies each, four label groups
(so that both kinds of matched pools exist) and image and report embeddings
independent of each other and of the labels, audits it once
(:func:`relink.retrieval.audit.audit_queries`) and summarises the per-query
values three ways: every query of a 100-patient set, every query of a
600-patient set, and the queries of 60 patients drawn from the 600-patient
set (ranked against all 600 patients' candidates, as a subset summary is).
For every row of the table (metric x level x direction x negatives x pool x
K) it counts the seeds whose interval of the lift contains 1 (``cover``),
lies wholly above 1 (``above``: a false alarm) or was withheld as not
computable (``withheld``: the audit says so instead of printing a number;
counted as neither a miss nor a false alarm).

Run as a script to print the table: ``python tests/helpers/null_coverage.py [seeds]``.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from relink.embeddings import EmbeddingSet
from relink.labels import CHEXPERT_LABELS
from relink.retrieval.audit import audit_queries, summarise
from relink.retrieval.spec import AuditSpec

NEGATIVES = ("random", "pathology_matched", "positive_set_matched")
VECTORS = {0: {2: 1.0}, 1: {2: 1.0, 5: -1.0}, 2: {8: 1.0}, 3: {}}
SPEC = AuditSpec(pools=(10, 100, 1000, "full"), ks=(1, 5), negatives=NEGATIVES, n_boot=1000, pools_clip=True)
KEYS = ["set", "metric", "level", "direction", "negatives", "pool", "K"]


def random_set(n_patients: int, seed: int, d: int = 16) -> EmbeddingSet:
    """A set whose image and report embeddings are independent unit vectors (1-4 studies per patient)."""
    rng = np.random.default_rng([seed, n_patients])
    patient = np.repeat(np.arange(n_patients), rng.integers(1, 5, n_patients))
    n = len(patient)
    group = rng.choice(len(VECTORS), size=n, p=[0.45, 0.25, 0.2, 0.1])
    rows = pd.DataFrame({"pair_id": [f"q{i}" for i in range(n)], "patient_id": [f"p{p}" for p in patient]})
    for j, name in enumerate(CHEXPERT_LABELS):
        rows[name] = [VECTORS[g].get(j, 0.0) for g in group]
    image, text = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    return EmbeddingSet.from_arrays(rows, image.astype(np.float32), text.astype(np.float32))


def _outcomes(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    # a pool of K or fewer candidates is a certain hit: nothing to estimate
    f = frame[(frame.metric != "recall") | (frame.chance < 1 - 1e-12)]
    slack = 1e-9 * f.chance
    withheld = f.ci_low.isna() | f.ci_high.isna()
    out = pd.DataFrame({
        "set": name, "metric": f.metric, "level": f.level, "direction": f.direction, "negatives": f.negatives,
        "pool": np.where(f.metric != "recall", "full", np.where(f.N == f.N.max(), "full", f.N.astype(str))),
        "K": f.K,
        "cover": ~withheld & (f.ci_low - slack <= f.chance) & (f.chance <= f.ci_high + slack),
        "above": ~withheld & (f.ci_low - slack > f.chance),
        "withheld": withheld,
        "expected_hits": np.where(f.metric == "recall", f.n_queries * f.chance, np.nan)})
    # the matched pools' random twins (same covered queries) are rows of their own
    twin = f[f.paired_random_value.notna()] if "paired_random_value" in f else f.iloc[:0]
    if len(twin):
        chance = twin.paired_random_value / twin.paired_random_lift
        w = twin.paired_random_ci_low.isna()
        out = pd.concat([out, pd.DataFrame({
            "set": name, "metric": "recall (paired twin)", "level": twin.level, "direction": twin.direction,
            "negatives": twin.negatives, "pool": twin.N.astype(str), "K": twin.K,
            "cover": ~w & (twin.paired_random_ci_low <= chance * (1 + 1e-9)) & (chance <= twin.paired_random_ci_high
                                                                                 * (1 + 1e-9)),
            "above": ~w & (twin.paired_random_ci_low > chance * (1 + 1e-9)), "withheld": w,
            "expected_hits": twin.n_queries * chance})])
    return out


def one_seed(seed: int, summary=summarise) -> pd.DataFrame:
    """Outcomes of one seed: the three summaries above, one row per table row."""
    parts = []
    for n_patients in (100, 600):
        es = random_set(n_patients, seed)
        qv = audit_queries(es, SPEC.but(random_state=seed))
        parts.append(_outcomes(summary(qv, None), f"{n_patients} patients"))
        if n_patients == 600:
            patients = es.rows["patient_id"].to_numpy()
            chosen = np.random.default_rng([seed, 60]).choice(np.unique(patients), 60, replace=False)
            parts.append(_outcomes(summary(qv, np.isin(patients, chosen)), "60 of 600 patients"))
    return pd.concat(parts, ignore_index=True)


def coverage_table(seeds: int = 200, summary=summarise, first_seed: int = 0) -> pd.DataFrame:
    """Per row type: the share of seeds whose interval covers 1, lies wholly above 1, or was withheld."""
    rows = pd.concat([one_seed(s, summary) for s in range(first_seed, first_seed + seeds)], ignore_index=True)
    table = rows.groupby(KEYS, sort=False).agg(cover=("cover", "mean"), above=("above", "mean"),
                                               withheld=("withheld", "mean"), seeds=("cover", "size"),
                                               expected_hits=("expected_hits", "mean"))
    return table.reset_index()


if __name__ == "__main__":
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    pd.set_option("display.width", 200, "display.max_rows", 500)
    t = coverage_table(seeds)
    print(t.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"\nminimum cover + withheld {(t.cover + t.withheld).min():.3f}, "
          f"maximum above {t.above.max():.3f}, cells {len(t)}")
