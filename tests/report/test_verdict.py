"""The verdict rule on sets of known alignment, thresholds moved across the measured value, --fail-on exit codes,
the headline count against a brute-force reference, and low shown, never a default."""

import json

import numpy as np
import pytest
from scipy.stats import hypergeom

from helpers.report import arrays, patients, report_args, rows_frame, run, write_set
from relink import embeddings
from relink.embeddings import EmbeddingSet
from relink.errors import RelinkError
from relink.report import build, verdict
from relink.report.threat import ReportSpec, reached


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict")
    return {"random": write_set(root / "random", n=600, noise=None, seed=3),
            "aligned": write_set(root / "aligned", n=600, noise=0.3, seed=4),
            "weak": write_set(root / "weak", n=600, d=32, noise=6.0, seed=5)}


@pytest.fixture(scope="module")
def records(sets):
    spec = ReportSpec(attacker_pools=(100,), n_boot=200)
    return {name: build.build(embeddings.load(path), spec)[0] for name, path in sets.items()}


def _row(record, direction="image_to_report"):
    return next(r for r in record["verdict"]["rows"] if r["direction"] == direction)


def test_random_embeddings_are_never_elevated_and_low_only_when_shown(records):
    rec = records["random"]
    v = rec["verdict"]
    assert v["level"] in ("low", "inconclusive")
    for row in v["rows"]:
        lo, hi = row["lift_ci"]
        assert lo <= 1.0 <= hi  # chance lies inside the interval: nothing to report
        if row["level"] == "low":  # low has to be shown: both upper bounds at or below the elevated thresholds
            assert hi <= 2.0 and row["excess_images_ci"][1] <= 10.0
        else:
            assert hi > 2.0 or row["excess_images_ci"][1] > 10.0
    if v["level"] == "inconclusive":
        assert v["patients_to_decide"] > v["audited_patients"] and "inconclusive" in v["decision"]
    head = rec["headline"]
    assert head["chance_images"] == pytest.approx(600 / 100)


def test_aligned_embeddings_are_high(records):
    rec = records["aligned"]
    assert rec["verdict"]["level"] == "high"
    row = _row(rec)
    assert row["lift_ci"][0] > 10 and row["excess_images_ci"][0] > 100
    assert {r["direction"] for r in rec["verdict"]["set_by"]} == {"image_to_report", "report_to_image"}


def test_headline_count_matches_a_brute_force_reference(sets, records):
    """Expected images re-linked at rank 1 = M x mean over queries of P(no outranking distractor in the pool)."""
    es = embeddings.load(sets["weak"])
    img, txt = es.unit("image"), es.unit("text")
    scores = img.astype(np.float64) @ txt.astype(np.float64).T
    truth = np.diag(scores)
    above = (scores > truth[:, None] + 1e-6).sum(axis=1)  # the truth itself never scores above itself
    n, pool = len(es), 100
    recall = hypergeom.cdf(0, n - 1, above, pool - 1).mean()
    head = records["weak"]["headline"]
    assert head["expected_images"] == pytest.approx(n * recall, rel=1e-6)
    assert head["chance_images"] == pytest.approx(n / pool)
    assert head["lift"] == pytest.approx(recall * pool, rel=1e-6)
    assert f"of {n:,} released images" in head["sentence"] and "with each image's own report among 100 candidates" in head["sentence"]


def test_moving_thresholds_across_the_measured_value_flips_the_verdict(records):
    rows = records["weak"]["risk"]
    judged = records["weak"]["verdict"]["rows"]  # both directions at the declared pool
    lift_lo = [r["lift_ci"][0] for r in judged]
    lift = [r["lift"] for r in judged]
    excess_lo = [r["excess_images_ci"][0] for r in judged]
    excess = [r["excess_images"] for r in judged]
    assert min(lift_lo) > 1.0  # a signal distinguishable from chance, so every level is reachable

    def level(**thresholds):
        return verdict.judge(rows, ReportSpec(attacker_pools=(100,), n_boot=200, **thresholds), 0.95)["level"]

    far = dict(excess_elevated=1e6, excess_high=1e6)  # the lift alone
    assert level(lift_elevated=1.0, lift_high=max(lift_lo) * 0.99, **far) == "high"
    assert level(lift_elevated=1.0, lift_high=max(lift_lo) * 1.01, **far) == "elevated"
    assert level(lift_elevated=max(lift) * 0.99, lift_high=max(lift) * 1.01, **far) == "elevated"
    assert level(lift_elevated=max(lift) * 1.01, lift_high=max(lift) * 1.01, **far) == "inconclusive"
    lift_hi = max(r["lift_ci"][1] for r in judged)
    assert level(lift_elevated=lift_hi * 1.01, lift_high=lift_hi * 1.01, **far) == "low"  # shown low
    far = dict(lift_elevated=1e6, lift_high=1e6)  # the absolute count alone
    assert level(excess_elevated=0.0, excess_high=max(excess_lo) * 0.99, **far) == "high"
    assert level(excess_elevated=max(excess) * 0.99, excess_high=max(excess) * 1.01, **far) == "elevated"
    assert level(excess_elevated=max(excess) * 1.01, excess_high=max(excess) * 1.01, **far) == "inconclusive"
    excess_hi = max(r["excess_images_ci"][1] for r in judged)
    assert level(excess_elevated=excess_hi * 1.01, excess_high=excess_hi * 1.01, **far) == "low"


@pytest.mark.parametrize("lift, lo, excess, excess_lo, expected", [
    (50.0, 20.0, 5.0, 1.0, "high"),        # the lift's lower bound clears lift_high
    (3.0, 1.5, 150.0, 120.0, "high"),      # the count's lower bound clears excess_high
    (3.0, 1.2, 5.0, 1.0, "elevated"),      # point lift above 2, interval above chance
    (1.5, 1.1, 12.0, 2.0, "elevated"),     # point excess above 10, interval above chance
    (3.0, 0.9, 12.0, -1.0, "inconclusive"),  # points above, but the interval reaches chance
    (1.5, 1.2, 5.0, 1.0, "inconclusive"),  # under both elevated thresholds, but the lift's upper bound 2.5 is not
    (0.5, 0.2, 5.0, 1.0, "low"),           # both upper bounds (1.5 and 6) at or below the elevated thresholds
    (float("nan"), float("nan"), float("nan"), float("nan"), "inconclusive"),
])
def test_rule_on_hand_made_rows(lift, lo, excess, excess_lo, expected):
    row = {"lift": lift, "lift_ci": [lo, lift + 1],
           "excess_images": excess, "excess_images_ci": [excess_lo, excess + 1]}
    assert verdict.judge_row(row, ReportSpec())[0] == expected
    # the same row on an audit below the minimum size is never low
    small = verdict.judge_row(row, ReportSpec(), n_patients=verdict.MIN_PATIENTS - 1)[0]
    assert small == (expected if expected != "low" else "inconclusive")


def test_patients_to_decide_shrink_the_interval_to_the_threshold():
    """Half-widths scale as 1/sqrt(patients): a row at lift 1.5 with upper bound 2.5 (half-width 1, gap 0.5) needs
    4x the patients to be shown low; a row at lift 3 whose lower bound is 0.5 (half-width 2.5, gap 2) needs
    (2.5/2)^2 = 1.5625x to be shown elevated."""
    spec = ReportSpec()
    row = {"lift": 1.5, "lift_ci": [0.5, 2.5], "excess_images": 1.0, "excess_images_ci": [-1.0, 3.0]}
    assert verdict.patients_to_decide(row, spec, 100) == 400
    row = {"lift": 3.0, "lift_ci": [0.5, 5.5], "excess_images": 20.0, "excess_images_ci": [-5.0, 45.0]}
    assert verdict.patients_to_decide(row, spec, 100) == 157
    row = {"lift": 2.0, "lift_ci": [0.5, 3.5], "excess_images": 10.0, "excess_images_ci": [-5.0, 25.0]}
    assert verdict.patients_to_decide(row, spec, 100) is None  # on the threshold: no size decides it
    # just under a threshold: the factor explodes; no practical audit (over 100x this one) is offered
    row = {"lift": 1.9999999, "lift_ci": [0.5, 3.5], "excess_images": 5.0, "excess_images_ci": [-5.0, 8.0]}
    assert verdict.patients_to_decide(row, spec, 100) is None


def test_fail_on_exit_codes_through_the_cli(sets, tmp_path, capsys):
    out = tmp_path / "r.html"
    rc, stdout, _ = run(report_args(sets["aligned"], out, "--json", str(tmp_path / "r.json"), "--fail-on", "high"),
                        capsys)
    assert rc == 3 and "verdict HIGH" in stdout and "exit status 3" in stdout
    assert out.is_file() and json.loads((tmp_path / "r.json").read_text())["verdict"]["level"] == "high"
    rc, _, _ = run(report_args(sets["aligned"], out, "--fail-on", "elevated"), capsys)
    assert rc == 3  # high reaches elevated
    rc, _, _ = run(report_args(sets["aligned"], out), capsys)
    assert rc == 0  # no --fail-on: the verdict never fails the command
    rc, stdout, _ = run(report_args(sets["random"], out, "--fail-on", "high"), capsys)
    assert rc == 0 and ("verdict LOW" in stdout or "verdict INCONCLUSIVE" in stdout)
    level = "LOW" if "verdict LOW" in stdout else "INCONCLUSIVE"
    rc, stdout, _ = run(report_args(sets["random"], out, "--fail-on", "elevated"), capsys)
    assert rc == (3 if level == "INCONCLUSIVE" else 0)  # inconclusive counts as elevated
    rc, stdout, _ = run(report_args(sets["aligned"], out, "--fail-on", "high", "--lift-high", "1e9",
                                    "--excess-high", "1e9", "--confident-high", "1e9"), capsys)
    assert rc == 0 and "verdict ELEVATED" in stdout  # thresholds raised above the measured values


def test_spec_checks_in_python():
    with pytest.raises(RelinkError, match="--lift-elevated 20.0 is above --lift-high 10.0"):
        ReportSpec(lift_elevated=20)
    with pytest.raises(RelinkError, match="--bootstrap must be an integer >= 100"):
        ReportSpec(n_boot=10)
    assert ReportSpec(attacker_pools=["1000,10000", "100"]).attacker_pools == (1000, 10000, 100)
    assert ReportSpec(top_k=(10, 5)).ks == (1, 5, 10)


def test_the_books_rule_sentence_names_what_set_a_high_verdict(records):
    """The custodian chapter's sentence (paper layer) on the report's own verdict records: every row that set the
    verdict appears with its direction, pool and reasons; a low verdict names none."""
    from relink.paper.sentences import report_rule

    high = records["aligned"]["verdict"]
    text = report_rule(high)
    for row in high["set_by"]:
        assert f"at N = {row['N']:,}" in text and all(reason in text for reason in row["reasons"])
    assert "image \u2192 report" in text and "report \u2192 image" in text
    assert "It was set by" not in report_rule(records["random"]["verdict"])  # low or inconclusive: nothing set it
    if records["random"]["verdict"]["level"] == "inconclusive":
        assert "It is inconclusive at:" in report_rule(records["random"]["verdict"])


def test_report_coverage_scales_every_count_and_full_is_a_pool(sets):
    """pi x M x Recall@K(N): a coverage share of 0.25 divides every count by four and leaves recall and lift alone;
    --attacker-pool full is the whole audited set (N = M, the audit's full-pool row)."""
    es = embeddings.load(sets["weak"])
    one = build.build(es, ReportSpec(attacker_pools=(100, "full"), n_boot=200))[0]
    quarter = build.build(es, ReportSpec(attacker_pools=(100, "full"), n_boot=200, report_coverage=0.25))[0]
    assert one["threat_model"]["attacker_pools"] == [100, len(es)]
    assert one["threat_model"]["declared_pools"] == ["100", "full"]
    for a, b in zip(one["risk"], quarter["risk"]):
        assert b["recall"] == a["recall"] and b["lift"] == a["lift"]
        for key in ("expected_images", "chance_images", "excess_images"):
            assert b[key] == pytest.approx(a[key] / 4)
    assert "0.25" in quarter["threat_model"]["statement"] and "the model" in quarter["threat_model"]["statement"]
    assert "diagnoses" in one["threat_model"]["why"]
    assert {r["N"] for r in one["verdict"]["rows"]} == {100, len(es)}


def test_the_report_refuses_to_mix_train_rows_unless_split_all(tmp_path, capsys):
    from helpers.report import rows_frame, write_set

    rows = rows_frame(300, 9)
    rows["split"] = np.where(np.arange(300) % 2 == 0, "train", "test")
    emb = write_set(tmp_path / "mixed", n=300, noise=1.0, seed=9, rows=rows)
    out = tmp_path / "r.html"
    rc, _, err = run(report_args(emb, out), capsys)
    assert rc == 2 and "--split" in err and "train" in err and not out.exists()
    rc, _, _ = run(report_args(emb, out, "--json", str(tmp_path / "r.json"), "--split", "all"), capsys)
    assert rc == 0 and json.loads((tmp_path / "r.json").read_text())["threat_model"]["split"] == "test, train"
    rc, _, _ = run(report_args(emb, out, "--json", str(tmp_path / "r.json"), "--split", "test", "--overwrite"),
                   capsys)
    assert rc == 0 and json.loads((tmp_path / "r.json").read_text())["threat_model"]["split"] == "test"


def test_the_cohort_fingerprint_depends_on_the_audited_rows_only(sets):
    """The same rows under two models (another meta.json, other embeddings) share one fingerprint; other rows do
    not."""
    import hashlib

    es = embeddings.load(sets["weak"])
    spec = ReportSpec(attacker_pools=(100,))
    a = build.threat_model(es, spec, 600, {})
    b = build.threat_model(es.subset(np.arange(len(es))[::-1]), spec, 600, {})
    assert a["cohort_fingerprint"] == b["cohort_fingerprint"]
    expect = hashlib.sha256("\n".join(sorted(es.rows.pair_id.astype(str))).encode()).hexdigest()[:16]
    assert a["cohort_fingerprint"] == expect
    assert build.threat_model(es.subset(np.arange(300)), spec, 600, {})["cohort_fingerprint"] != expect

# Low is shown, never a default: small audits of a real signal and random sets never read low without upper bounds
# below the thresholds; an inconclusive verdict names the audit size that would decide it and fails --fail-on
# elevated.
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
