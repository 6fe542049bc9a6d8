"""Confident re-links in the report: the section and its rule line, from metric rows that follow the audit's schema.

Until the audit computes these rows (``relink.audit`` with confident
precision targets), they come from a fixture table written here by hand in
the documented schema; the report's arithmetic (shares x pi x M, the rule on
the lower bound) is checked against numbers computed in the test.
"""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

import relink
from relink.api import report as report_api
from relink.report import confident, mitigation
from relink.report.threat import ReportSpec
from helpers.report import report_args, run, same_json, write_set

M = 400  # audited rows = released images by default


def confident_table(model: str, share: float, low: float, high: float, N: int = 100) -> pd.DataFrame:
    """Metric rows as the audit writes them: both attackers, both directions and levels, two precision targets."""
    rows = []
    for metric in ("relinked_best", "relinked_calibrated"):
        for direction in ("image_to_report", "report_to_image"):
            for level in ("study", "patient"):
                for target, f in ((0.9, 1.0), (0.99, 0.5)):
                    g = f * (0.8 if metric == "relinked_calibrated" else 1.0)
                    rows.append({"model": model, "cohort": "handmade", "direction": direction, "negatives": "random",
                                 "level": level, "N": N, "K": 0, "estimator": "exact", "metric": metric,
                                 "precision_target": target, "value": share * g, "ci_low": low * g,
                                 "ci_high": high * g, "chance": 0.0, "lift": np.nan, "n_queries": M,
                                 "coverage": 1.0})
    recall = {**rows[0], "metric": "recall", "K": 1, "precision_target": np.nan}  # other rows are ignored
    return pd.DataFrame(rows + [recall])


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    """A set whose Recall@1 verdict is not high (text unrelated to the image)."""
    return write_set(tmp_path_factory.mktemp("confident") / "emb", n=M, noise=None, seed=71)


def test_the_section_counts_images_and_rules_on_the_lower_bound():
    spec = ReportSpec(attacker_pools=(100,), released=2000, report_coverage=0.5, confident_high=10)
    table = confident_table("m", share=0.02, low=0.012, high=0.03)
    rec = confident.section(table, spec, released=2000, pools=(100,))
    assert rec["available"] and len(rec["rows"]) == 16  # the recall row is not a confident row
    best = next(r for r in rec["rows"] if r["attacker"] == "relinked_best" and r["level"] == "study"
                and r["direction"] == "image_to_report" and r["precision_target"] == 0.9)
    assert best["images"] == pytest.approx(0.02 * 0.5 * 2000)  # share x pi x M = 20
    assert best["images_ci"] == pytest.approx([0.012 * 1000, 0.03 * 1000])
    assert rec["level"] == "high" and len(rec["set_by"]) == 2  # both directions: lower bound 12 > 10
    # the point estimate above the threshold is not enough: the lower bound must clear it
    rec = confident.section(confident_table("m", share=0.02, low=0.009, high=0.03), spec, 2000, (100,))
    assert rec["level"] == "not high" and rec["set_by"] == []
    # only the declared pools count, and only exact random-pool rows
    assert not confident.section(table, spec, 2000, (1000,))["available"]
    mc = table.assign(estimator="monte_carlo")
    assert not confident.section(mc, spec, 2000, (100,))["available"]


def test_the_rule_applies_at_the_declared_precision_only():
    spec = ReportSpec(attacker_pools=(100,), confident_precision=0.99, confident_high=3)
    rec = confident.section(confident_table("m", share=0.02, low=0.012, high=0.03), spec, 400, (100,))
    # at 0.99 the fixture's lower bound is half: 0.006 x 400 = 2.4 images, not above 3
    assert rec["level"] == "not high"
    spec = ReportSpec(attacker_pools=(100,), confident_precision=0.95)
    rec = confident.section(confident_table("m", share=0.02, low=0.012, high=0.03), spec, 400, (100,))
    assert rec["level"] is None and "not applied" in rec["note"]  # no row at 0.95: no rule, said so


NONE = pd.DataFrame()  # no confident rows, whether or not the report asks the audit for them


def _report(es, **kwargs):
    return relink.report(str(es), ReportSpec(attacker_pools=(100,), n_boot=100), split="all", **kwargs)


def test_confident_rows_raise_the_verdict_to_high_and_the_page_says_why(weak, tmp_path):
    plain = _report(weak, confident=NONE)
    assert plain.verdict != "high"
    assert not plain.document["confident"]["available"] and "not computed" in plain.document["confident"]["note"]
    assert all("confident" not in line for line in plain.document["verdict"]["rule"])
    name = plain.document["threat_model"]["model"]

    raised = _report(weak, confident=confident_table(name, share=0.1, low=0.05, high=0.15))
    v = raised.document["verdict"]
    assert raised.verdict == "high" and v["decision"] == "do not release as declared"
    assert v["rule"][-1] == raised.document["confident"]["rule"] and "0.9" in v["rule"][-1]
    assert [r["reasons"][0] for r in v["set_by"]] == ["images re-linked at precision >= 0.9: lower bound 20.0 > 10"] * 2
    # every other part of the verdict is the recall rule's, unchanged
    assert v["rows"] == plain.document["verdict"]["rows"]
    html = raised.html
    table = re.search(r'<table id="confident-table">(.*?)</table>', html, re.S).group(1)
    # study level, a row per (model, attacker, direction), the two precision targets side by side
    assert table.count('<tr class="confident-row">') == 4 and "precision &ge; 0.99" in table
    assert table.count("40 (20–60)") == 2 and table.count("20 (10–30)") == 2  # best: 0.9, then 0.99
    assert "It holds here, so the verdict is high." in html
    doc = json.loads(raised.json)
    assert doc["confident"]["rows"][0]["images"] == pytest.approx(0.1 * M)

    kept = _report(weak, confident=confident_table(name, share=0.1, low=0.02, high=0.15))  # lower bound 8 < 10
    assert kept.verdict == plain.verdict
    assert kept.document["verdict"]["rule"][-1].startswith("high (confident re-links)")  # printed, not applied
    assert "It does not hold here." in kept.html


def test_confident_flags_are_checked_by_name(weak, tmp_path, capsys):
    for flag, value in (("--confident-precision", "1.5"), ("--confident-high", "-1")):
        rc, _, err = run(report_args(weak, tmp_path / "r.html", "--split", "all", flag, value), capsys)
        assert rc == 2 and flag in err and "\n" not in err.strip()
        assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("ci, says", [((-0.02, 0.01), "protect nothing"), ((-0.2, -0.05), "fewer images")])
def test_the_retrained_heads_sentence(weak, ci, says):
    contrast = {"value": sum(ci) / 2, "ci": list(ci), "N": 100}
    weak_report = lambda **kw: _report(weak, confident=NONE, **kw)  # noqa: E731
    rec = mitigation.retrained_heads(contrast)
    assert rec["measured"] and says in rec["sentence"]
    result = weak_report(retrained=contrast)
    assert result.document["mitigation"]["retrained_heads"]["sentence"] == rec["sentence"]
    assert 'id="retrained-heads"' in result.html and says in result.html
    assert not mitigation.retrained_heads(None)["measured"]
    assert 'id="retrained-heads"' not in weak_report().html
    assert math.isfinite(rec["value"])


def test_advice_to_release_fewer_images_counts_the_confident_rule(tmp_path):
    """The advice "release at most m images" is re-checked with the confident rule at that size too."""
    es = write_set(tmp_path / "mid", n=M, noise=3.0, seed=72)
    # thresholds where the verdict rests on the images re-linked beyond chance, which a smaller release lowers
    spec = ReportSpec(attacker_pools=(100,), n_boot=100, lift_elevated=99, lift_high=100, excess_high=1000,
                      confident_high=2)
    plain = relink.report(str(es), spec, split="all", confident=NONE)
    advice = [line for line in plain.document["recommendation"] if line.startswith("Releasing at most")]
    assert advice, plain.document["recommendation"]  # the recall rule alone: a smaller release helps
    m_star = int(advice[0].split("at most ")[1].split(" ")[0].replace(",", ""))
    name = plain.document["threat_model"]["model"]
    # confident re-links whose lower bound at m_star images is still above 2: the smaller release stays high
    share_low = 3.0 / m_star
    held = relink.report(str(es), spec, split="all",
                         confident=confident_table(name, share=2 * share_low, low=share_low, high=3 * share_low))
    assert held.verdict == "high"
    assert not [line for line in held.document["recommendation"] if line.startswith("Releasing at most")]


def test_after_mitigation_the_panel_keeps_its_confident_re_links(tmp_path):
    """Mitigated heads replace the custodian's model only: a public model's confident re-links still count."""
    from helpers.report import fake_mitigated, rows_frame

    rows = rows_frame(M, seed=4)
    custodian = write_set(tmp_path / "custodian", n=M, noise=0.3, seed=73, rows=rows)
    public = write_set(tmp_path / "public", n=M, noise=None, seed=74, rows=rows,
                       meta={"format_version": 1, "model": "public-vit", "weights_fingerprint": "eeee000000000006"})
    dp = fake_mitigated(tmp_path / "dp", custodian, noise=50.0)
    spec = ReportSpec(attacker_pools=(100,), n_boot=100)
    quiet = relink.report([str(custodian), str(public)], spec, split="all", mitigated=[dp], confident=NONE)
    assert quiet.document["mitigation"]["runs"][0]["verdict"]["level"] != "high"  # the heads alone lower it
    loud = relink.report([str(custodian), str(public)], spec, split="all", mitigated=[dp],
                         confident=confident_table("public-vit", share=0.2, low=0.1, high=0.3))
    run_verdict = loud.document["mitigation"]["runs"][0]["verdict"]
    assert run_verdict["level"] == "high" and {r["model"] for r in run_verdict["set_by"]} == {"public-vit"}
    assert not any("lower: releasing these heads instead" in line for line in loud.document["recommendation"])


@pytest.mark.skipif(not report_api.CONFIDENT_FROM_AUDIT,
                    reason="the report does not ask the audit for confident re-links yet "
                           "(relink.api.report.CONFIDENT_FROM_AUDIT)")
def test_the_audit_s_confident_rows_reach_the_report(tmp_path):
    """Switched on: the rows come from relink.audit for every panel model; random text re-links nobody
    confidently, a strongly aligned public model re-links most images at precision 0.9 and sets the verdict."""
    from helpers.report import rows_frame

    rows = rows_frame(1500, seed=5)
    unrelated = write_set(tmp_path / "unrelated", n=1500, noise=None, seed=75, rows=rows)
    aligned = write_set(tmp_path / "aligned", n=1500, noise=0.5, seed=76, rows=rows,
                        meta={"format_version": 1, "model": "public-vit", "weights_fingerprint": "ffff000000000007"})
    result = relink.report([str(unrelated), str(aligned)], ReportSpec(attacker_pools=(100,), n_boot=100),
                           split="all")
    rec = result.document["confident"]
    assert rec["available"] and rec["level"] == "high"
    best = [r for r in rec["rows"] if r["attacker"] == "relinked_best" and r["level"] == "study"
            and r["precision_target"] == 0.9]
    by_model = {r["model"]: r for r in best if r["direction"] == "image_to_report"}
    assert by_model["public-vit"]["share"] > 0.5
    assert by_model[result.document["panel"]["models"][0]["model"]]["images_ci"][0] <= 10
    assert {r["model"] for r in rec["set_by"]} == {"public-vit"}


def _two_pass_confident(folders, names, spec):
    """The former second audit per model (``relink.audit`` with precision targets, random pools at the declared
    pools): the reference the report's single pass must reproduce."""
    from relink.api.report import confident_targets
    from relink.retrieval.spec import AuditSpec

    aspec = AuditSpec(pools=spec.attacker_pools, ks=(1,), directions=("image_to_report", "report_to_image"),
                      levels=("study", "patient"), n_boot=spec.n_boot, random_state=spec.random_state, ci=spec.ci,
                      confident=confident_targets(spec))
    tables = [relink.audit(str(f), aspec).table.assign(model=name) for f, name in zip(folders, names)]
    table = pd.concat(tables, ignore_index=True)
    return table[table["metric"].isin(confident.METRICS)]


@pytest.mark.parametrize("labels", ["none", "sorted", "unsorted"])
def test_the_single_audit_pass_gives_the_two_pass_confident_rows(tmp_path, labels):
    """The report counts confident re-links in its one audit pass per model; the section, the rule and the
    verdict equal those built from a second audit per model (the former way), number for number. ``sorted``:
    labelled rows (the pass also audits pathology-matched pools) already in label-group order, so both passes
    visit the rows in one order: equal to the last bit; ``unsorted``: labelled rows in no such order (the single
    pass visits them in label-group order, the reference in the set's), so the same terms are summed in another
    order: equal to 1e-12 relative (floating-point summation order, nothing else; the lowest counted threshold
    does not depend on the order)."""
    from helpers.report import rows_frame

    from relink.retrieval.matching import label_groups
    from relink.labels import CHEXPERT_LABELS

    rows = rows_frame(600, seed=9, labels=labels != "none")
    if labels == "sorted":
        codes = label_groups(rows.loc[:, list(CHEXPERT_LABELS)].to_numpy(float))["pathology_matched"]
        rows = rows.iloc[np.argsort(codes, kind="stable")].reset_index(drop=True)
    folders = [write_set(tmp_path / "custodian", n=600, noise=1.2, seed=81, rows=rows),
               write_set(tmp_path / "public", n=600, noise=0.6, seed=82, rows=rows)]
    names = ["custodian-model", "public-model"]
    spec = ReportSpec(attacker_pools=(10, 100), n_boot=100)
    single = relink.report([str(f) for f in folders], spec, split="all", names=names)
    reference = _two_pass_confident(folders, names, spec)
    two = relink.report([str(f) for f in folders], spec, split="all", names=names, confident=reference)
    assert single.document["confident"]["available"]
    assert len(single.document["confident"]["rows"]) == len(reference) == 2 * 2 * 2 * 2 * 2 * 2
    tol = 1e-12 if labels == "unsorted" else 0.0
    assert same_json(single.document["confident"], two.document["confident"], rtol=tol, atol=tol)
    assert single.document["verdict"] == two.document["verdict"]
    assert single.document["record"]["decision"] == two.document["record"]["decision"]
    # the pass's settings say what it counted
    assert single.document["settings"]["audit"]["confident"] == [0.9, 0.99]
