"""The study's quantitative claims, and a computed verdict for each reproduced number.

The study's numbers live here, as data, and reach the book only through this module. The one rating rule
is :func:`verdict`; :data:`RULE` states it in words and the claims chapter prints it, so the rule stated is
the rule applied. Besides RULE's verdicts, ``not applicable``: a claim about the external cohort on a
profile without one. Paired contrasts come from the results that hold the per-query values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import beyond, dp_effects
from . import summaries as S

NOT_APPLICABLE = "not applicable"
NO_STUDY_VALUE = "no study value"
MAGNITUDE_FACTOR = 2.0
POINTS_TOLERANCE = 1.0
RULE = (
    "Each claim is rated by one rule. Its *test* is an interval: the 95% interval of the reproduced effect must "
    "lie wholly on the side of no effect that the claim states (a lift over chance above 1; a rise, measured as "
    "a ratio of two models' Recall@1 on the same queries, above 1; a drop below 0). Comparisons of two "
    "measurements are paired: both are measured on the same queries and the interval resamples patients. "
    f"**Magnitude**: the test holds and the reproduced number is within a factor of {MAGNITUDE_FACTOR:g} of the "
    f"study's (a change in points: within {POINTS_TOLERANCE:g} point; a count: within the factor, with no test). "
    "**Direction**: the test holds but the size differs, or a qualitative claim's test holds. **Not**: the test "
    "fails, whatever the size. **No study value**: a measurement beyond the study (the stronger attacker's "
    "confident re-links), which the study did not report; it is shown with its interval and not rated. The "
    "internal and external cohorts are different patients, so no claim pairs them; where the book sets them "
    "side by side the comparison is descriptive.")
EXTERNAL_CLAIMS = ("external_eval", "dp_transfer_external", "confident_090_retrained")  # need an external cohort


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    study: float | None  # None: qualitative
    kind: str  # "ratio" | "relative_change" | "points_change" | "qualitative" | "count" | "beyond"
    unit: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim("pairs_total", "Image-report pairs in all", 406241, "count"),
    Claim("patients_total", "Patients in all", 126804, "count"),
    Claim("internal_eval", "Held-out internal pairs (MIMIC-CXR)", 43793, "count"),
    Claim("external_eval", "External pairs (CheXpert Plus)", 29296, "count"),
    Claim("lift_n100", "Strongest model, Recall@1 lift over chance at N = 100", 15, "ratio", "x"),
    Claim("lift_n10000", "Strongest model, Recall@1 lift over chance at N = 10,000", 50, "ratio", "x"),
    Claim("above_chance_full", "Strongest model above chance at full-database scale", None, "qualitative"),
    Claim("ladder_rises", "Re-linkage rises with clinical specialization", None, "qualitative"),
    Claim("hard_negatives", "Signal survives pathology-matched hard negatives", None, "qualitative"),
    Claim("dp_drop_internal", "DP heads vs the model before mitigation: relative change of Recall@1 at N = 10,000, "
          "internal (the study's design)", -61.8, "relative_change", "%"),
    Claim("dp_transfer_external", "DP heads transfer to the external cohort without retraining", None, "qualitative"),
    Claim("probe_change", "Linear-probe macro AUROC change (79.63% to 79.43%)", -0.20, "points_change", "points"),
    # beyond the study (no study value): the stronger attacker's confident re-links, % of the held-out images
    Claim("confident_090", "Beyond the study: images re-linked at precision ≥ 0.9, strongest model, best threshold",
          None, "beyond", "%"),
    Claim("confident_099", "Beyond the study: images re-linked at precision ≥ 0.99, strongest model, best threshold",
          None, "beyond", "%"),
    Claim("confident_090_calibrated", "Beyond the study: images re-linked at precision ≥ 0.9, threshold calibrated "
          "on held-apart labelled pairs", None, "beyond", "%"),
    Claim("confident_090_dp", "Beyond the study: images re-linked at precision ≥ 0.9 with the DP heads", None,
          "beyond", "%"),
    Claim("confident_090_retrained", "Beyond the study: images re-linked at precision ≥ 0.9 with heads re-trained "
          "on public pairs", None, "beyond", "%"),
)


def verdict(claim: Claim, value: float, holds: bool | None = None) -> str:
    """The verdict for a reproduced ``value`` (``holds``: the qualitative test or the direction test)."""
    if claim.kind == "beyond":
        return NO_STUDY_VALUE
    if claim.kind == "qualitative":
        return "direction" if holds else "not"
    if value is None or not np.isfinite(value):
        return "not"
    if claim.kind == "points_change":
        if abs(value - claim.study) <= POINTS_TOLERANCE:
            return "magnitude"
        return "direction" if np.sign(value) == np.sign(claim.study) else "not"
    if holds is not None and not holds:  # the effect itself is not there (within its interval): no size can reproduce it
        return "not"
    ratio = value / claim.study
    if 1 / MAGNITUDE_FACTOR <= ratio <= MAGNITUDE_FACTOR:
        return "magnitude"
    if claim.kind == "count":
        return "not"
    return "direction" if (holds if holds is not None else ratio > 0) else "not"


def _lift_interval(row: pd.Series) -> dict[str, Any]:
    """The interval a lift claim is tested on: the recall interval over the row's chance."""
    return {"low": float(row["ci_low"] / row["chance"]), "high": float(row["ci_high"] / row["chance"]),
            "of": "lift over chance"}


def _paired(row: pd.Series, of: str) -> dict[str, Any]:
    return {"value": float(row["value"]), "low": float(row["ci_low"]), "high": float(row["ci_high"]), "of": of,
            "n_queries": int(row["n_queries"]), "n_patients": int(row["n_patients"])}


def measurements(res) -> dict[str, tuple]:
    """claim key -> (reproduced value, direction/qualitative test, how it was measured[, intervals]).

    ``intervals`` (non-DP rows): ``{"low", "high", "of"}``, the interval the
    test reads, and optionally ``"paired"``: a paired contrast on the same
    queries (``value``, ``low``, ``high``, ``of``, ``n_queries``, ``n_patients``).
    """
    summary = res.table("cohorts", "summary.parquet")
    audit = res.table("audit", "audit.parquet")
    hn = res.table("hard_negatives", "hard_negatives.parquet")
    util = res.table("utility", "utility.parquet")
    internal, external = S.cohort_names(audit)
    top = S.strongest_model(audit)
    n_t = S.largest_finite_pool(audit, cohort=internal)
    out: dict[str, tuple[float | None, bool | None, str]] = {}

    roles = summary.groupby("role")["pairs"].sum()
    out["pairs_total"] = (float(summary["pairs"].sum()), None, "all cohorts")
    out["patients_total"] = (float(summary["patients"].sum()), None, "all cohorts")
    ev = summary[(summary["role"] == "internal") & (summary["split"] == res.profile.eval_split)]["pairs"].sum()
    out["internal_eval"] = (float(ev), None, f"{internal}, split {res.profile.eval_split}")
    none = "no external cohort in this profile"
    out["external_eval"] = (float(roles["external"]), None, str(external)) if external is not None else (None, None, none)

    r100 = S.one(audit, model=top, cohort=internal, N=100, K=1)
    out["lift_n100"] = (float(r100["lift"]), S.lift_low(r100) > 1, f"{top}, {internal}", _lift_interval(r100))
    rt = S.one(audit, model=top, cohort=internal, N=n_t, K=1)
    out["lift_n10000"] = (float(rt["lift"]), S.lift_low(rt) > 1, f"{top}, {internal}, N = {n_t:,}",
                          _lift_interval(rt))
    rf = S.one(audit, model=top, cohort=internal, pool="full", K=1)
    out["above_chance_full"] = (float(rf["lift"]), S.lift_low(rf) > 1, f"lift at N = {int(rf['N']):,} (full pool)",
                                _lift_interval(rf))
    # a rise is a comparison of two models on the same queries: the paired ratio, last rung over first
    order = S.ladder_order(audit)
    ladder = [float(S.one(audit, model=m, cohort=internal, N=100, K=1)["value"]) for m in order]
    rise = S.one(res.table("audit", "contrasts.parquet"), contrast="rung_vs_first", model=order[-1],
                 cohort=internal, direction="image_to_report", level="study", N=100, K=1)
    steps = "every step rises" if S.is_monotone(ladder) else "not every step rises"
    ratio = _paired(rise, "paired ratio of Recall@1, last rung / first")
    out["ladder_rises"] = (ratio["value"], bool(ratio["low"] > 1),
                           f"Recall@1 at N = 100, last rung / first rung, paired ({steps})",
                           {**{k: ratio[k] for k in ("low", "high", "of")}, "paired": ratio})
    # survival is the matched pools' lift over chance; how much of the random-pool signal they keep is the
    # paired ratio on the queries a matched pool covers
    n_hn = S.largest_covered_pool(hn, model=top, cohort=internal, negatives="pathology_matched")
    rh = S.one(hn, model=top, cohort=internal, negatives="pathology_matched", N=n_hn, K=1)
    kept = S.one(res.table("hard_negatives", "contrasts.parquet"), contrast="matched_vs_random", model=top,
                 cohort=internal, negatives="pathology_matched", direction="image_to_report", level="study",
                 N=n_hn, K=1)
    out["hard_negatives"] = (float(rh["lift"]), S.lift_low(rh) > 1, f"lift, matched pools of {n_hn:,}",
                             {**_lift_interval(rh), "paired": _paired(
                                 kept, "Recall@1 in matched / random pools of the same size, same queries")})

    eps = res.profile.epsilon
    # the DP rows: paired contrasts of result dp (relink.paper.dp_effects), in the study's design
    out.update(dp_effects.claim_rows(res.table("dp", "contrasts.parquet"), eps, internal, external))
    probe = 100 * (S.utility_value(util, "linear_probe_macro_auroc", "dp") - S.utility_value(util, "linear_probe_macro_auroc", "before"))
    out["probe_change"] = (probe, None, f"ε = {eps:g}, projected image embeddings")
    out.update(beyond.claim_rows(res.table("attacker", "confident.parquet"), eps))
    return out


def _fmt(value: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.1f}x"
    if kind in ("relative_change",):
        return f"{value:+.1f}%"
    if kind == "points_change":
        return f"{value:+.2f} points"
    if kind == "beyond":
        return f"{value:.2f}%" if abs(value) < 1 else f"{value:.1f}%"
    return f"{value:.3g}"


def _numbers(*values: float) -> list[str]:
    """One precision style for the lifts and ratios of the claims page: a number and its interval bounds share
    their decimals (two, or one when the largest is 10 or more), so "0.62 (0.50–0.75)", never "0.62 (0.5–0.754)"."""
    finite = [abs(v) for v in values if np.isfinite(v)]
    digits = 1 if finite and max(finite) >= 10 else 2
    return [f"{v:.{digits}f}" if np.isfinite(v) else "n/a" for v in values]


def _span(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval"
    lo, hi = _numbers(low, high)
    return f"{lo}–{hi}"


def _fmt_interval(iv: dict[str, Any], value: float | None) -> str:
    """The interval a test read, as the rule read it, in the precision of the number it brackets:
    "lift over chance: 3.10–5.20"."""
    if value is None or not (np.isfinite(iv["low"]) and np.isfinite(iv["high"])):
        return f"{iv['of']}: {_span(iv['low'], iv['high'])}"
    _, lo, hi = _numbers(value, iv["low"], iv["high"])
    return f"{iv['of']}: {lo}–{hi}"


def _fmt_paired(p: dict[str, Any]) -> str:
    """A paired contrast with its interval, its rows and patients."""
    value, lo, hi = _numbers(p["value"], p["low"], p["high"])
    span = f"{lo}–{hi}" if np.isfinite(p["low"]) and np.isfinite(p["high"]) else "no interval"
    return f"{p['of']}: {value} (95% interval {span}; {p['n_queries']:,} queries, {p['n_patients']:,} patients)"


def reproduce(res) -> pd.DataFrame:
    """One row per claim: study number, reproduced number, profile, verdict."""
    found = measurements(res)
    rows = []
    for claim in CLAIMS:
        value, holds, how, *more = found[claim.key]
        iv = more[0] if more else {}
        paired = iv.get("paired") or {}
        applicable = not (claim.key in EXTERNAL_CLAIMS and value is None)
        if not applicable:
            shown = NOT_APPLICABLE
        elif claim.kind == "beyond":
            shown = _fmt(value, claim.kind)
        elif iv and value is not None:  # the number and the interval its test read, in one precision
            shown = _numbers(value, iv["low"], iv["high"])[0] + "x"
            shown = ("yes" if holds else "no") + f" ({shown})" if claim.kind == "qualitative" else shown
        elif claim.kind == "qualitative":
            kind = "relative_change" if claim.key == "dp_transfer_external" else "ratio"
            shown = ("yes" if holds else "no") + (f" ({_fmt(value, kind)})" if value is not None else "")
        else:
            shown = _fmt(value, claim.kind)
        rows.append({
            "key": claim.key,
            "claim": claim.text,
            "study": (NO_STUDY_VALUE if claim.kind == "beyond" else "yes" if claim.study is None
                      else _fmt(claim.study, claim.kind)),
            "reproduced": shown,
            "measured as": how,
            "profile": res.profile.name,
            "Interval the test read": _fmt_interval(iv, value) if iv else "",
            "Paired contrast": _fmt_paired(paired) if paired else "",
            "verdict": verdict(claim, value, holds) if applicable else NOT_APPLICABLE,
            "study_value": claim.study,
            "reproduced_value": value,
            "ci_low_value": iv.get("low", np.nan),
            "ci_high_value": iv.get("high", np.nan),
            "paired_value": paired.get("value", np.nan),
            "paired_low": paired.get("low", np.nan),
            "paired_high": paired.get("high", np.nan),
        })
    return pd.DataFrame(rows)


def styled(table: pd.DataFrame):
    """The claims table as the book shows it: readable headers, no index, verdicts coloured."""
    from .display import show

    colors = {"magnitude": "#d5f5e3", "direction": "#fcf3cf", "not": "#fadbd8", NOT_APPLICABLE: "#eaeded",
              NO_STUDY_VALUE: "#eaf2f8"}
    hidden = ["key", "study_value", "reproduced_value", "profile", "ci_low_value", "ci_high_value", "paired_value",
              "paired_low", "paired_high"]
    view = table.drop(columns=hidden)  # the prose names the profile
    return show(view, uid="claims").map(lambda v: f"background-color: {colors.get(v, '')}", subset=["Verdict"])


SIZE_CLAIMS = ("pairs_total", "patients_total", "internal_eval", "external_eval")


def sizes_sentence(table: pd.DataFrame, credentialed: bool) -> str:
    """What the cohort-size rows test on this profile: the generator (equal to the study's by construction, or
    smaller by design) or, on a credentialed profile, the cohorts the run read."""
    rows = table[table["key"].isin(SIZE_CLAIMS)]
    name = table["profile"].iloc[0]
    if credentialed:
        return (f"The {len(rows)} cohort-size rows count the cohorts this run read, whatever their release holds; "
                "they test the loaders and the split, not a finding.")
    if all(r.reproduced_value is not None and float(r.reproduced_value) == float(r.study_value)
           for r in rows.itertuples()):
        return (f"The {len(rows)} cohort-size rows match the study by construction: the {name} profile generates "
                "exactly the study's numbers of pairs, patients, held-out and external pairs, so they check the "
                "generator, not a finding.")
    return (f"The {len(rows)} cohort-size rows differ from the study by design: the {name} profile generates smaller "
            "cohorts (the `study` profile generates the study's sizes exactly).")


def summary_sentence(table: pd.DataFrame) -> str:
    """How many claims reproduce, in one sentence (the introduction and the claims chapter)."""
    counts = table["verdict"].value_counts()
    n = lambda v: int(counts.get(v, 0))  # noqa: E731
    verb = lambda k: "is" if k == 1 else "are"  # noqa: E731
    study = len(table) - n(NO_STUDY_VALUE)
    text = (f"Of the study's {study} quantitative claims, {n('magnitude')} {verb(n('magnitude'))} reproduced in "
            f"magnitude, {n('direction')} in direction only and {n('not')} not at all on the "
            f"{table['profile'].iloc[0]} profile")
    if n(NOT_APPLICABLE):
        text += (f"; {n(NOT_APPLICABLE)} {verb(n(NOT_APPLICABLE))} not applicable to it "
                 "(it has no external cohort)")
    if n(NO_STUDY_VALUE):
        text += (f". The table's last {n(NO_STUDY_VALUE)} rows go beyond the study (the stronger attacker's "
                 "confident re-links): the study reported no such number, so they are shown with their intervals "
                 "and not rated")
    return text + "."


def glue_values(table: pd.DataFrame, credentialed: bool = False) -> dict[str, Any]:
    """Counts of verdicts, plus each claim's study number and reproduced number, for the prose (``credentialed``:
    the profile reads real cohorts, see :func:`sizes_sentence`)."""
    counts = table["verdict"].value_counts()
    out: dict[str, Any] = {
        "claims_total": len(table) - int(counts.get(NO_STUDY_VALUE, 0)),
        "claims_beyond": int(counts.get(NO_STUDY_VALUE, 0)),
        "claims_magnitude": int(counts.get("magnitude", 0)),
        "claims_direction": int(counts.get("direction", 0)),
        "claims_not": int(counts.get("not", 0)),
        "claims_not_applicable": int(counts.get(NOT_APPLICABLE, 0)),
        "claims_sentence": summary_sentence(table),
        "claims_sizes_sentence": sizes_sentence(table, credentialed),
        "claims_profile": str(table["profile"].iloc[0]),
    }
    for _, row in table.iterrows():
        if row["study_value"] is not None and np.isfinite(float(row["study_value"])):
            out[f"study_{row['key']}"] = float(row["study_value"])
        out[f"verdict_{row['key']}"] = row["verdict"]
        if row["Interval the test read"]:
            out[f"interval_{row['key']}"] = row["Interval the test read"]
        if row["Paired contrast"]:
            out[f"paired_{row['key']}"] = row["Paired contrast"]
            for part in ("value", "low", "high"):
                out[f"paired_{row['key']}_{part}"] = float(row[f"paired_{part}"])
    out["claims_rule"] = RULE
    out["claims_abstract"] = abstract_sentence(table)
    return out


VERDICT_WORDS = {"magnitude": "reproduced in magnitude", "direction": "reproduced in direction only",
                 "not": "not reproduced", NOT_APPLICABLE: "not applicable",
                 NO_STUDY_VALUE: "not rated (no study value)"}


def abstract_sentence(table: pd.DataFrame) -> str:
    """What chapter 6 says of each claim the abstract repeats."""
    row = table.set_index("key")
    said = []
    for key, what in (("lift_n100", "the lift at N = 100"), ("lift_n10000", "the lift in the largest pools"),
                      ("above_chance_full", "re-linkage above chance against the full pool"),
                      ("ladder_rises", "the rise with specialisation"),
                      ("hard_negatives", "survival of pathology-matched distractors"),
                      ("dp_drop_internal", "the DP heads' drop on the internal cohort"),
                      ("dp_transfer_external", "its transfer to the external cohort"),
                      ("probe_change", "the linear-probe change")):
        if key in row.index:
            said.append(f"{what}, {VERDICT_WORDS[row.loc[key, 'verdict']]}")
    text = "Chapter 6 rates the study's claims: " + "; ".join(said) + "."
    for key, lead, tail in (
            ("ladder_rises", "From the first rung to the last, Recall@1 at N = 100 is multiplied by ",
             " on the same queries"),
            ("hard_negatives", "In pathology-matched pools Recall@1 is ",
             " times its value in random pools of the same size on the same queries")):
        if key in row.index and np.isfinite(row.loc[key, "paired_value"]):
            value = _numbers(row.loc[key, "paired_value"], row.loc[key, "paired_low"], row.loc[key, "paired_high"])[0]
            span = _span(row.loc[key, "paired_low"], row.loc[key, "paired_high"])
            text += f" {lead}{value}{tail} (paired 95% interval {span})."
    return text
