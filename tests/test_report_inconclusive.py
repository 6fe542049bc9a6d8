"""Low is shown, never a default: small audits of a real signal and random sets never read low without upper bounds
below the thresholds; an inconclusive verdict names the audit size that would decide it and fails --fail-on
elevated."""

import numpy as np
import pytest

from relink.embeddings import EmbeddingSet
from relink.report import build, verdict
from relink.report.threat import ReportSpec, reached
from test_report_fixtures import arrays, patients, rows_frame

NOISE_LIFT_2 = 10.0  # text = image + 10 N(0, 1) in 32 dimensions: Recall@1 lift ~2.1 at N = 10 (3,000 rows)


def _set(n_patients: int, noise, seed: int) -> EmbeddingSet:
    n = len(patients(10 * n_patients, np.random.default_rng(seed + 1000))[:])  # rows of about n_patients patients
    rows = rows_frame(n, seed)
    keep = rows.patient_id.isin(rows.patient_id.unique()[:n_patients]).to_numpy()
    image, text = arrays(n, 32, noise, seed)
    return EmbeddingSet.from_arrays(rows[keep].reset_index(drop=True), image[keep], text[keep])


@pytest.mark.parametrize("seed", range(8))
def test_nine_patients_with_a_true_lift_of_two_are_never_low(seed):
    es = _set(9, NOISE_LIFT_2, seed)
    assert es.rows.patient_id.nunique() == 9
    spec = ReportSpec(attacker_pools=(10,), released=100_000, top_k=(5,))
    v = build.build(es, spec)[0]["verdict"]
    assert v["level"] != "low"
    if v["level"] == "inconclusive":
        assert "do not release" in v["decision"] and reached("inconclusive", "elevated")


@pytest.mark.parametrize("seed", range(3))
def test_random_sets_of_3000_rows_are_low_only_below_the_thresholds(seed):
    rows = rows_frame(3000, seed)
    image, text = arrays(3000, 32, None, seed)
    es = EmbeddingSet.from_arrays(rows, image, text)
    spec = ReportSpec(attacker_pools=(100, 1000))
    v = build.build(es, spec)[0]["verdict"]
    assert v["level"] in ("low", "inconclusive")
    for row in v["rows"]:
        shown_low = row["lift_ci"][1] <= spec.lift_elevated and row["excess_images_ci"][1] <= spec.excess_elevated
        assert row["level"] == ("low" if shown_low else "inconclusive")
    assert (v["level"] == "low") == all(r["level"] == "low" for r in v["rows"])
    if v["level"] == "inconclusive":
        assert v["patients_to_decide"] is None or v["patients_to_decide"] > v["audited_patients"]


def test_the_audit_size_that_would_decide_it_does_decide_it():
    """An inconclusive random audit names P patients; a fresh random audit of 1.5 P patients is shown low (the
    estimate is about chance in both, so the interval shrinks as predicted)."""
    spec = ReportSpec(attacker_pools=(100,), released=200)
    es = _set(60, None, 11)
    v = build.build(es, spec)[0]["verdict"]
    assert v["level"] == "inconclusive" and v["patients_to_decide"]
    bigger = _set(int(1.5 * v["patients_to_decide"]), None, 12)
    assert build.build(bigger, spec)[0]["verdict"]["level"] == "low"


def test_fail_on_treats_inconclusive_as_elevated():
    assert reached("inconclusive", "elevated") and not reached("inconclusive", "high")
    assert verdict.decision("inconclusive").startswith("inconclusive")
    assert verdict.decision("low") == "release as declared" and verdict.decision("high") == "do not release as declared"
