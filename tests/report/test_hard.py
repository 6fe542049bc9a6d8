"""Hard negatives on the page: matched pools beside random pools on exactly the queries they cover."""

import numpy as np
import pytest
from scipy.stats import hypergeom

from helpers.report import rows_frame, write_set
from relink import embeddings
from relink.labels import CHEXPERT_LABELS
from relink.report import build, hard
from relink.report.threat import ReportSpec, fit
from relink.retrieval.audit import audit_queries, summarise
from relink.retrieval.matching import label_groups


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    rows = rows_frame(600, seed=61)
    # few label vectors, so matched pools of 100 fill for most queries
    for name in CHEXPERT_LABELS:
        rows[name] = 0.0
    rows["No Finding"] = (np.arange(600) % 3 == 0).astype(float)
    rows["Support Devices"] = (np.arange(600) % 3 == 1).astype(float)
    es = embeddings.load(write_set(tmp_path_factory.mktemp("hard") / "emb", n=600, noise=2.0, seed=61, rows=rows))
    spec = ReportSpec(attacker_pools=(100,), n_boot=200)
    qv = audit_queries(es, build.audit_spec(fit(spec, len(es)), True))
    return es, qv, summarise(qv)


def test_random_on_the_covered_queries_matches_a_brute_force_reference(audited):
    es, qv, frame = audited
    rows = hard.hard_rows(qv, frame, (1,), min_cell=10)
    row = next(r for r in rows if r["direction"] == "image_to_report" and r["level"] == "study" and r["N"] == 100)
    codes = label_groups(es.labels())["pathology_matched"]
    group_size = np.bincount(codes)[codes]
    covered = group_size - 1 >= 99
    assert row["coverage"] == pytest.approx(covered.mean()) and row["n_queries"] == covered.sum()
    img, txt = es.unit("image").astype(np.float64), es.unit("text").astype(np.float64)
    scores = img @ txt.T
    truth = np.diag(scores)
    beats = scores > truth[:, None] + 1e-6
    random_recall = hypergeom.cdf(0, len(es) - 1, beats.sum(axis=1), 99)
    same_group = codes[:, None] == codes[None, :]
    matched_recall = hypergeom.cdf(0, group_size - 1, (beats & same_group).sum(axis=1), 99)
    assert row["random_same_queries"]["recall"] == pytest.approx(random_recall[covered].mean(), rel=1e-6)
    assert row["recall"] == pytest.approx(matched_recall[covered].mean(), rel=1e-6)
    assert row["lift_retained"] == pytest.approx(row["lift"] / row["random_same_queries"]["lift"])


def test_the_fallback_without_paired_columns_gives_the_same_figures(audited):
    _, qv, frame = audited
    paired = hard.hard_rows(qv, frame, (1,), min_cell=10)
    assert all(r.get("random_same_queries", {}).get("source") == "audit paired columns"
               for r in paired if not (r["suppressed"] or r["not_computable"]))
    fallback = hard.hard_rows(qv, frame.drop(columns=list(hard.PAIRED)), (1,), min_cell=10)
    for a, b in zip(paired, fallback):
        assert a["suppressed"] == b["suppressed"] and a["not_computable"] == b["not_computable"]
        if not (a["suppressed"] or a["not_computable"]):
            assert b["random_same_queries"]["source"] == "random pools over the covered queries"
            assert b["random_same_queries"]["recall"] == pytest.approx(a["random_same_queries"]["recall"], rel=1e-9)


def test_a_pool_too_large_to_fill_is_suppressed(audited):
    """Disclosure control (a number not shown) and not computable (no number) are told apart."""
    _, qv, frame = audited
    rows = hard.hard_rows(qv, frame, (1,), min_cell=10**6)
    assert rows and all((r["suppressed"] or r["not_computable"]) and "recall" not in r for r in rows)
    for r in rows:
        n = int(frame[(frame.negatives == "pathology_matched") & (frame.metric == "recall") & (frame.N == r["N"])
                      & (frame.K == 1) & (frame.direction == r["direction"]) & (frame.level == r["level"])
                      ].n_queries.iloc[0])
        assert r["not_computable"] == (n == 0) and r["suppressed"] == (n > 0)
