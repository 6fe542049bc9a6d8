"""The study's quantitative claims, and a computed verdict for each reproduced number.

The study's numbers live here, as data, and reach the book only through this
module (glued by the claims chapter). A verdict is one of:

* ``magnitude`` — a numeric claim reproduced within a factor of two (ratios,
  relative changes), or within one point for a change measured in points;
  a ratio or change whose own test fails (a lift whose interval reaches
  chance, a drop whose interval reaches the value before) is ``not``,
  whatever its size;
* ``direction`` — same side of chance / same sign, different size; or a
  qualitative claim (above chance, rises, survives) that holds with its
  interval;
* ``not`` — neither;
* ``not applicable`` — the profile has nothing to compare (a claim about the
  external cohort on a profile without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import dp_effects
from . import summaries as S

NOT_APPLICABLE = "not applicable"
EXTERNAL_CLAIMS = ("external_eval", "dp_transfer_external")  # need an external cohort


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    study: float | None  # None: qualitative
    kind: str  # "ratio" | "relative_change" | "points_change" | "qualitative" | "count"
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
)


def verdict(claim: Claim, value: float, holds: bool | None = None) -> str:
    """The verdict for a reproduced ``value`` (``holds``: the qualitative test or the direction test)."""
    if claim.kind == "qualitative":
        return "direction" if holds else "not"
    if value is None or not np.isfinite(value):
        return "not"
    if claim.kind == "points_change":
        if abs(value - claim.study) <= 1.0:
            return "magnitude"
        return "direction" if np.sign(value) == np.sign(claim.study) else "not"
    if holds is not None and not holds:  # the effect itself is not there (within its interval): no size can reproduce it
        return "not"
    ratio = value / claim.study
    if 0.5 <= ratio <= 2.0:
        return "magnitude"
    if claim.kind == "count":
        return "not"
    return "direction" if (holds if holds is not None else ratio > 0) else "not"


def measurements(res) -> dict[str, tuple[float | None, bool | None, str]]:
    """claim key -> (reproduced value, direction/qualitative test, how it was measured)."""
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
    out["lift_n100"] = (float(r100["lift"]), S.lift_low(r100) > 1, f"{top}, {internal}")
    rt = S.one(audit, model=top, cohort=internal, N=n_t, K=1)
    out["lift_n10000"] = (float(rt["lift"]), S.lift_low(rt) > 1, f"{top}, {internal}, N = {n_t:,}")
    rf = S.one(audit, model=top, cohort=internal, pool="full", K=1)
    out["above_chance_full"] = (float(rf["lift"]), S.lift_low(rf) > 1, f"lift at N = {int(rf['N']):,} (full pool)")
    ladder = [float(S.one(audit, model=m, cohort=internal, N=100, K=1)["value"]) for m in S.ladder_order(audit)]
    out["ladder_rises"] = (ladder[-1] / ladder[0] if ladder[0] else np.nan, S.is_monotone(ladder),
                           "Recall@1 at N = 100, last rung / first rung")
    n_hn = S.largest_covered_pool(hn, model=top, cohort=internal, negatives="pathology_matched")
    rh = S.one(hn, model=top, cohort=internal, negatives="pathology_matched", N=n_hn, K=1)
    out["hard_negatives"] = (float(rh["lift"]), S.lift_low(rh) > 1, f"lift, matched pools of {n_hn:,}")

    eps = res.profile.epsilon
    # the DP rows: paired contrasts of result dp (relink.paper.dp_effects), in the study's design
    out.update(dp_effects.claim_rows(res.table("dp", "contrasts.parquet"), eps, internal, external))
    probe = 100 * (S.utility_value(util, "linear_probe_macro_auroc", "dp") - S.utility_value(util, "linear_probe_macro_auroc", "before"))
    out["probe_change"] = (probe, None, f"ε = {eps:g}, projected image embeddings")
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
    return f"{value:.3g}"


def reproduce(res) -> pd.DataFrame:
    """One row per claim: study number, reproduced number, profile, verdict."""
    found = measurements(res)
    rows = []
    for claim in CLAIMS:
        value, holds, how = found[claim.key]
        applicable = not (claim.key in EXTERNAL_CLAIMS and value is None)
        if not applicable:
            shown = NOT_APPLICABLE
        elif claim.kind == "qualitative":
            kind = "relative_change" if claim.key == "dp_transfer_external" else "ratio"
            shown = ("yes" if holds else "no") + (f" ({_fmt(value, kind)})" if value is not None else "")
        else:
            shown = _fmt(value, claim.kind)
        rows.append({
            "key": claim.key,
            "claim": claim.text,
            "study": "yes" if claim.study is None else _fmt(claim.study, claim.kind),
            "reproduced": shown,
            "measured as": how,
            "profile": res.profile.name,
            "verdict": verdict(claim, value, holds) if applicable else NOT_APPLICABLE,
            "study_value": claim.study,
            "reproduced_value": value,
        })
    return pd.DataFrame(rows)


def styled(table: pd.DataFrame):
    """The claims table as the book shows it: readable headers, no index, verdicts coloured."""
    from .display import show

    colors = {"magnitude": "#d5f5e3", "direction": "#fcf3cf", "not": "#fadbd8", NOT_APPLICABLE: "#eaeded"}
    view = table.drop(columns=["key", "study_value", "reproduced_value", "profile"])  # the prose names the profile
    return show(view, uid="claims").map(lambda v: f"background-color: {colors.get(v, '')}", subset=["Verdict"])


def summary_sentence(table: pd.DataFrame) -> str:
    """How many claims reproduce, in one sentence (the introduction and the claims chapter)."""
    counts = table["verdict"].value_counts()
    n = lambda v: int(counts.get(v, 0))  # noqa: E731
    verb = lambda k: "is" if k == 1 else "are"  # noqa: E731
    text = (f"Of the study's {len(table)} quantitative claims, {n('magnitude')} {verb(n('magnitude'))} reproduced in "
            f"magnitude, {n('direction')} in direction only and {n('not')} not at all on the "
            f"{table['profile'].iloc[0]} profile")
    if n(NOT_APPLICABLE):
        return text + (f"; {n(NOT_APPLICABLE)} {verb(n(NOT_APPLICABLE))} not applicable to it "
                       "(it has no external cohort).")
    return text + "."


def glue_values(table: pd.DataFrame) -> dict[str, Any]:
    """Counts of verdicts, plus each claim's study number and reproduced number, for the prose."""
    counts = table["verdict"].value_counts()
    out: dict[str, Any] = {
        "claims_total": len(table),
        "claims_magnitude": int(counts.get("magnitude", 0)),
        "claims_direction": int(counts.get("direction", 0)),
        "claims_not": int(counts.get("not", 0)),
        "claims_not_applicable": int(counts.get(NOT_APPLICABLE, 0)),
        "claims_sentence": summary_sentence(table),
        "claims_profile": str(table["profile"].iloc[0]),
    }
    for _, row in table.iterrows():
        if row["study_value"] is not None and np.isfinite(float(row["study_value"])):
            out[f"study_{row['key']}"] = float(row["study_value"])
        out[f"verdict_{row['key']}"] = row["verdict"]
    return out
