"""The paper's paired contrasts (matched vs random pools; a later rung vs the first) and how the claims read them.

References are computed apart from the code under test: the audit summary's own paired random column
(:mod:`relink.retrieval.summary`), plain means over the covered queries, and hand-made tables.
"""

import numpy as np
import pandas as pd
import pytest

from relink.embeddings import EmbeddingSet
from relink.labels import CHEXPERT_LABELS
from relink.paper import claims
from relink.paper.results.hard_negatives import matched_vs_random
from relink.retrieval.audit import audit_queries, summarise
from relink.retrieval.spec import AuditSpec


@pytest.fixture(scope="module")
def labelled_audit():
    rng = np.random.default_rng(5)
    n, d = 360, 16
    patients = np.repeat(np.arange(120), 3)
    image = rng.normal(size=(n, d))
    text = image + 1.5 * rng.normal(size=(n, d))
    labels = np.zeros((n, len(CHEXPERT_LABELS)))
    labels[:, :3] = rng.integers(0, 2, size=(n, 3))  # few label groups: some pools of 20 cannot be matched
    labels[:, 0] = np.where(rng.random(n) < 0.1, 1.0, labels[:, 0])
    rows = pd.DataFrame({"pair_id": np.arange(n).astype(str), "patient_id": patients.astype(str).astype(object)})
    for j, name in enumerate(CHEXPERT_LABELS):
        rows[name] = labels[:, j]
    es = EmbeddingSet.from_arrays(rows, image.astype(np.float32), text.astype(np.float32))
    spec = AuditSpec(pools=(10, 60), ks=(1, 5), levels=("study",), n_boot=200,
                     negatives=("random", "pathology_matched", "positive_set_matched"), pools_clip=True)
    qv = audit_queries(es, spec)
    return qv, summarise(qv, model="m", cohort="c")


def test_matched_vs_random_is_the_ratio_of_the_two_recalls_on_the_covered_queries(labelled_audit):
    qv, table = labelled_audit
    rows = pd.DataFrame(matched_vs_random(qv))
    assert set(rows["negatives"]) == {"pathology_matched", "positive_set_matched"} and set(rows["K"]) == {1}
    assert len(rows) == 2 * 2 * 2  # kinds x directions x pools
    for _, r in rows.iterrows():
        row = table[(table["metric"] == "recall") & (table["negatives"] == r["negatives"]) & (table["N"] == r["N"])
                    & (table["K"] == 1) & (table["direction"] == r["direction"]) & (table["estimator"] == "exact")]
        assert len(row) == 1
        row = row.iloc[0]
        # the summary's own figures for the same covered queries: matched recall and the paired random recall
        assert r["b"] == pytest.approx(row["value"], rel=1e-12)
        assert r["a"] == pytest.approx(row["paired_random_value"], rel=1e-12)
        assert r["value"] == pytest.approx(row["value"] / row["paired_random_value"], rel=1e-12)
        assert r["n_queries"] == round(row["coverage"] * len(qv))
        assert r["kind"] == "ratio" and r["ci_low"] <= r["value"] <= r["ci_high"]
    assert (rows["n_queries"] < len(qv)).any(), "the fixture should leave some queries uncovered"


def _table(**over):
    base = {"key": "k", "verdict": "direction", "paired_value": np.nan, "paired_low": np.nan, "paired_high": np.nan}
    return {**base, **over}


def test_the_abstract_says_what_the_table_says():
    table = pd.DataFrame([
        _table(key="lift_n100", verdict="magnitude"), _table(key="lift_n10000", verdict="not"),
        _table(key="above_chance_full", verdict="direction"),
        _table(key="ladder_rises", verdict="direction", paired_value=1.8, paired_low=1.234, paired_high=2.6),
        _table(key="hard_negatives", verdict="not", paired_value=0.5, paired_low=np.nan, paired_high=np.nan),
    ])
    text = claims.abstract_sentence(table)
    assert "the lift at N = 100, reproduced in magnitude;" in text and "largest pools, not reproduced;" in text
    assert "survival of pathology-matched distractors, not reproduced." in text
    assert "specialisation, reproduced in direction only;" in text
    assert "multiplied by 1.80 on the same queries (paired 95% interval 1.23\u20132.60)" in text
    assert "0.50 times" in text and "no interval" in text


def test_one_precision_per_number_and_its_interval():
    assert claims._numbers(0.6234, 0.5, 0.7549) == ["0.62", "0.50", "0.75"]
    assert claims._numbers(12.34, 9.5, 15.26) == ["12.3", "9.5", "15.3"]  # the bounds follow the number
    assert claims._fmt_interval({"low": 3.1, "high": 5.2, "of": "lift"}, 4.0) == "lift: 3.10\u20135.20"
    assert claims._fmt_interval({"low": np.nan, "high": 5.2, "of": "lift"}, 4.0) == "lift: no interval"


def test_the_rule_stated_is_the_rule_applied():
    lift = next(c for c in claims.CLAIMS if c.key == "lift_n100")
    f = claims.MAGNITUDE_FACTOR
    assert f"factor of {f:g}" in claims.RULE and f"within {claims.POINTS_TOLERANCE:g} point" in claims.RULE
    assert claims.verdict(lift, lift.study * f * 0.99, True) == "magnitude"
    assert claims.verdict(lift, lift.study * f * 1.01, True) == "direction"
    assert claims.verdict(lift, lift.study, False) == "not"  # the interval reaches chance: no size saves it
    assert "paired" in claims.RULE and "descriptive" in claims.RULE
