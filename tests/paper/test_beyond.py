"""The chapter beyond the study, from a confident-re-link table whose numbers are known: the rows it picks,
the figures and sentences it writes, and the claims rows that have no study value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from relink.paper import beyond, claims, figures

MODELS = {1: "rung-a (10 steps)", 2: "rung-b (20 steps)", 3: "rung-c (40 steps)"}


def confident_table() -> pd.DataFrame:
    """Share re-linked = rung / 10 at precision 0.9 (half of it at 0.99, a quarter when calibrated); DP: a tenth."""
    rows = []
    for rung, model in MODELS.items():
        for state in ("before", "dp", "retrained") if rung == 3 else ("before",):
            for target in (0.9, 0.99):
                for metric in ("relinked_best", "relinked_calibrated"):
                    v = rung / 10 * (1 if target == 0.9 else 0.5) * (1 if metric == "relinked_best" else 0.25)
                    v = v / 10 if state == "dp" else v * 0.9 if state == "retrained" else v
                    rows.append({"model": model, "rung": rung, "role": "internal", "state": state, "pool": "100",
                                 "direction": "image_to_report", "level": "study", "N": 100, "K": 0,
                                 "estimator": "exact", "metric": metric, "precision_target": target, "value": v,
                                 "ci_low": v * 0.8, "ci_high": v * 1.2, "chance": 0.0, "lift": np.nan,
                                 "n_queries": 2400})
    return pd.DataFrame(rows)


def curves_table() -> pd.DataFrame:
    rows = []
    for rung, model in MODELS.items():
        for state in ("before", "dp") if rung == 3 else ("before",):
            for t in np.linspace(-0.2, 0.8, 6):
                recall = max(0.0, 0.6 - t) * rung / 3
                rows.append({"model": model, "rung": rung, "state": state, "direction": "image_to_report",
                             "level": "study", "N": 100, "threshold": t, "expected_correct": recall * 2400,
                             "expected_links": recall * 2400 / 0.8, "precision": 0.5 + 0.5 * t, "recall": recall})
    return pd.DataFrame(rows)


def test_rows_are_picked_for_the_strongest_rung_and_state_and_refuse_ambiguity():
    c = confident_table()
    assert beyond.row(c, "relinked_best", 0.9)["value"] == pytest.approx(0.3)
    assert beyond.row(c, "relinked_calibrated", 0.99, rung=2)["value"] == pytest.approx(0.2 * 0.5 * 0.25)
    assert beyond.row(c, "relinked_best", 0.9, "dp")["value"] == pytest.approx(0.03)
    with pytest.raises(LookupError):
        beyond.row(pd.concat([c, c]), "relinked_best", 0.9)


def test_numbers_are_written_with_their_interval_and_count():
    r = beyond.row(confident_table(), "relinked_best", 0.9)
    assert beyond.percent(r) == "30.0% (95% CI 24.0–36.0%)"
    assert beyond.images(r) == "about 720 of 2,400 images"
    small = beyond.row(confident_table(), "relinked_calibrated", 0.99, "dp")  # 0.375%: two decimals
    assert beyond.percent(small).startswith("0.38% (95% CI 0.30–0.45%)")


def test_table_has_a_row_per_model_heads_and_attacker_and_a_column_per_target():
    t = beyond.table(confident_table())
    heads = [(m, h) for m, h in zip(t["model"], t["Heads"])]
    assert heads[::2] == [(MODELS[1], "before mitigation"), (MODELS[2], "before mitigation"),
                          (MODELS[3], "before mitigation"), (MODELS[3], "DP heads"),
                          (MODELS[3], "heads re-trained on public pairs")]
    assert list(t["Attacker"][:2]) == ["best threshold", "calibrated threshold"]
    assert [c for c in t.columns if c.startswith("Re-linked")] == ["Re-linked at precision ≥ 0.9",
                                                                   "Re-linked at precision ≥ 0.99"]
    assert t.loc[6, "Re-linked at precision ≥ 0.9"].startswith("3.0%")  # strongest, DP heads, best threshold


def test_glue_values_and_sentence_say_the_strongest_model_before_and_after_dp():
    g = beyond.glue_values(confident_table(), epsilon=0.34)
    assert g["conf_best90"] == pytest.approx(30.0) and g["conf_best90_dp"] == pytest.approx(3.0)
    assert g["conf_cal90"] == pytest.approx(7.5) and g["attacker_n"] == 100
    text = g["attacker_sentence"]
    assert MODELS[3] in text and "ε = 0.34" in text and "30.0% (95% CI 24.0–36.0%)" in text
    assert not re.search(r"\b(\w+)\s+\1\b", text) and "nan" not in text


def test_claims_beyond_the_study_have_no_study_value_and_are_not_counted_as_the_study_s():
    beyond_claims = [c for c in claims.CLAIMS if c.kind == "beyond"]
    assert beyond_claims and all(c.study is None for c in beyond_claims)
    assert {claims.verdict(c, 99.0) for c in beyond_claims} == {claims.NO_STUDY_VALUE}
    found = beyond.claim_rows(confident_table(), 0.34)
    assert set(found) == {c.key for c in beyond_claims}
    assert found["confident_090_retrained"][0] == pytest.approx(27.0)
    without = beyond.claim_rows(confident_table().query("state != 'retrained'"), 0.34)
    assert without["confident_090_retrained"][0] is None  # no external cohort: not applicable
    value, holds, how, iv = found["confident_090_dp"]
    assert value == pytest.approx(3.0) and holds is None and "DP heads at ε = 0.34" in how
    assert (iv["low"], iv["high"]) == (pytest.approx(2.4), pytest.approx(3.6))
    table = pd.DataFrame({"verdict": ["magnitude", "direction", "not", claims.NO_STUDY_VALUE, claims.NO_STUDY_VALUE],
                          "profile": "smoke"})
    sentence = claims.summary_sentence(table)
    assert sentence.startswith("Of the study's 3 quantitative claims, 1 is reproduced in magnitude")
    assert "last 2 rows go beyond the study" in sentence


def test_retrained_sentence_says_whether_the_dp_heads_protect_against_this_attacker():
    c = confident_table()  # re-trained: 27% (21.6-32.4) against 30% before: as well within the interval
    assert beyond.retrained_sentence(c).endswith("against this attacker the DP heads protect nothing.")
    c.loc[c["state"] == "retrained", ["value", "ci_low", "ci_high"]] *= 0.5  # 13.5% (10.8-16.2): above DP's 3.6
    assert beyond.retrained_sentence(c).endswith("the DP heads protect only in part.")
    c.loc[c["state"] == "retrained", ["value", "ci_low", "ci_high"]] *= 0.1
    assert "gains nothing" in beyond.retrained_sentence(c)
    assert "not applicable" in beyond.retrained_sentence(c[c["state"] != "retrained"])
    c.loc[c["state"].isin(["before", "retrained"]), ["value", "ci_low"]] = 0.0  # nothing re-linked either way
    assert "cannot tell" in beyond.retrained_sentence(c)


def test_figures_label_their_axes_and_match_legend_to_marks():
    fig = figures.attacker_curves(curves_table(), beyond.ladder(confident_table()))
    ax = fig.axes[0]
    assert "precision" in ax.get_ylabel() and "%" in ax.get_xlabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines[f"{MODELS[3]}, DP heads"].get_color() == lines[MODELS[3]].get_color()
    assert lines[f"{MODELS[3]}, DP heads"].get_linestyle() == "--"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:4] == [MODELS[1], MODELS[2], MODELS[3], f"{MODELS[3]}, DP heads"]
    bars = figures.confident_bars(confident_table())
    ax = bars.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights[-1] == pytest.approx(30.0) and len(ax.patches) == 10  # 5 groups x 2 targets
    ticks = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert "%" in ax.get_ylabel() and ticks[-2].endswith("DP heads") and ticks[-1].endswith("public pairs")


def test_footprint_names_the_largest_step_and_chapter_and_any_over_binder_s_limit():
    from relink.paper import footprint

    def m(wall, proc, tree):
        return {"rc": 0, "wall_s": wall, "peak_process_mib": proc, "peak_tree_mib": tree}
    mem = {"profile": "synthetic", "cpus": 2, "measured": "2026-12-07",
           "stages": {"cohorts": m(100.0, 300, 700), "ladder": m(200.0, 1700, 1700), "audit": m(60.0, 900, 900)},
           "chapters": {"02_relinkage": m(30.0, 400, 600), "04_mitigation": m(40.0, 500, 650)}}
    g = footprint.glue_values(mem, {"04_mitigation": "Differentially private mitigation"})
    assert (g["mem_step"], g["mem_step_mib"]) == ("ladder", 1700)
    assert (g["mem_chapter"], g["mem_chapter_mib"]) == ("Differentially private mitigation", 500)
    assert g["binder_build_min"] == pytest.approx(430.0 / 60) and g["mem_verdict"].startswith("every step")
    assert g["mem_sentence"].startswith("The largest step, ladder, peaked at 1,700 MiB in one process, and the "
                                        "largest chapter (Differentially private mitigation) at 500 MiB")
    assert "took 7 minutes" in g["mem_sentence"]
    partial = footprint.glue_values({**mem, "chapters": {}})  # a measurement that stopped before the chapters
    assert "stopped before the rest of the paper" in partial["mem_sentence"] and "mem_chapter" not in partial
    mem["stages"]["ladder"] = m(200.0, 2100, 2100)
    assert footprint.glue_values(mem)["mem_verdict"] == "above it: ladder"
    t = footprint.table(mem, {"02_relinkage": "Re-linkage"})
    assert list(t["What ran"]) == ["Step: cohorts", "Step: ladder", "Step: audit", "Chapter: Re-linkage",
                                   "Chapter: 04_mitigation"]
    assert t["Peak, largest process (MiB)"].max() == 2100


def test_panel_sentence_names_the_worst_verdict_and_the_models_that_set_it():
    panel = {"worst": "high", "size": 3, "pool": 1000, "sentence": None,
             "models": [{"model": MODELS[3], "role": "custodian", "verdict": "high"},
                        {"model": MODELS[2], "role": "attacker", "verdict": "elevated"},
                        {"model": MODELS[1], "role": "attacker", "verdict": "high"}]}
    text = beyond.panel_sentence(panel)
    assert "**HIGH**" in text and "the 3 models" in text and "pools of 1,000" in text
    assert text.endswith(f"set by {MODELS[3]}, {MODELS[1]}.")
    t = beyond.panel_table(panel)
    assert list(t["Verdict"]) == ["HIGH", "ELEVATED", "HIGH"] and t.loc[0, "Role"] == "custodian's model"
