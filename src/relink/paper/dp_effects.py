"""The DP effect in words and claim rows, from the paired contrasts of results ``dp`` and ``retrained``.

DP's own effect is ``dp_vs_no_dp`` (the control: the same training without DP); ``dp_vs_before`` mixes it
with what retraining the heads does by itself. "Monotone" is said only where each step's interval excludes 0.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def contrast(table: pd.DataFrame, name: str, cohort: str, epsilon: float | None = None) -> dict[str, Any] | None:
    """The one row of ``name`` for ``cohort`` (and ``epsilon``), or ``None`` when the profile has none."""
    rows = table[(table["contrast"] == name) & (table["cohort"] == cohort)]
    if epsilon is not None:
        rows = rows[(rows["epsilon"] - float(epsilon)).abs() < 1e-12]
    return None if rows.empty else rows.iloc[0].to_dict()


def pct(row: dict[str, Any] | None) -> str:
    """``-16.0% [-30.1, -2.2]`` (a relative change in percent with its interval), or ``n/a``."""
    if row is None or not math.isfinite(row["value"]):
        return "n/a"
    lo, hi = row["ci_low"], row["ci_high"]
    interval = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{100 * row['value']:+.1f}%{interval}"


def excludes_zero(row: dict[str, Any] | None) -> bool:
    return row is not None and math.isfinite(row["ci_high"]) and (row["ci_high"] < 0 or row["ci_low"] > 0)


def effect_sentence(table: pd.DataFrame, epsilon: float, cohort: str, name: str = "the internal cohort") -> str:
    """DP's own effect beside the change from before and from retraining alone, for one cohort."""
    own = contrast(table, "dp_vs_no_dp", cohort, epsilon)
    before = contrast(table, "dp_vs_before", cohort, epsilon)
    retrain = contrast(table, "no_dp_vs_before", cohort)
    if before is None:
        return f"No DP contrast was computed on {name}."
    text = f"On {name}, DP heads at ε = {epsilon:g} change Recall@1 by {pct(before)} against the model before mitigation"
    if own is None:
        return text + " (this profile trains no heads without DP, so DP's own effect is not separated from retraining)."
    verdict = "an interval that excludes 0" if excludes_zero(own) else "an interval that includes 0"
    return (text + f"; retraining the heads the same way without DP changes it by {pct(retrain)}, so DP's own effect, "
            f"against that control, is {pct(own)} ({verdict}).")


def monotone_sentence(table: pd.DataFrame, cohort: str) -> str:
    """Whether recall rises with epsilon step by step, each step a paired interval."""
    steps = table[(table["contrast"] == "dp_vs_next_epsilon") & (table["cohort"] == cohort)].sort_values("epsilon")
    if steps.empty:
        return "One DP budget only: no frontier to order."
    clear = [excludes_zero(r) and r["value"] < 0 for r in steps.to_dict("records")]
    parts = "; ".join(f"{r['a']} vs {r['b']}: {pct(r)}" for r in steps.to_dict("records"))
    if all(clear):
        return f"Each smaller ε lowers Recall@1 against the next larger one, each step's paired interval below 0 ({parts})."
    return (f"The frontier is not shown to be monotone: not every step between budgets has a paired interval below 0 "
            f"({parts}).")


def retrained_sentence(table: pd.DataFrame, name: str = "the held-out internal rows") -> str:
    """Result ``retrained``'s verdict in one sentence: do heads re-trained on public pairs undo the DP heads?"""
    if table.empty:
        return "This profile has no external cohort, so no public set to re-train heads on: the attacker was not run."
    cohort = str(table["cohort"].iloc[0])
    vs_original = contrast(table, "retrained_vs_original", cohort)
    vs_dp = contrast(table, "retrained_vs_dp", cohort)
    dp = contrast(table, "dp_vs_original", cohort)
    eps = vs_dp["epsilon"]
    text = (f"On {name}, heads re-trained without DP on the external cohort change Recall@1 by {pct(vs_original)} "
            f"against the original heads and by {pct(vs_dp)} against the DP heads at ε = {eps:g}")
    if not excludes_zero(vs_original) and not excludes_zero(dp):
        return text + (f"; the DP heads themselves change it by {pct(dp)}: with neither interval excluding 0, these "
                       "rows are too few to tell whether the DP heads protect against this attacker.")
    if math.isfinite(vs_original["ci_high"]) and vs_original["ci_high"] >= 0:
        return text + (": they re-link as well as the original heads, so the DP heads protect nothing against an "
                       "attacker who holds the trunks and public pairs.")
    if excludes_zero(vs_dp) and vs_dp["value"] > 0:
        return text + (": they re-link less than the original heads but more than the DP heads, so the DP heads "
                       "protect only partly against an attacker who holds the trunks and public pairs.")
    return text + (": they re-link less than the original heads and no more than the DP heads, so within these "
                   "intervals this attacker does not undo the DP heads.")


def claim_rows(table: pd.DataFrame, epsilon: float, internal: str, external: str | None) -> dict[str, tuple]:
    """Chapter 6's DP rows in the study's design (``dp_vs_before``), with DP's own effect named in "how"."""
    out = {}
    for key, cohort in (("dp_drop_internal", internal), ("dp_transfer_external", external)):
        row = None if cohort is None else contrast(table, "dp_vs_before", cohort, epsilon)
        if row is None:
            out[key] = (None, None, "no external cohort in this profile" if cohort is None else "not computed")
            continue
        own = contrast(table, "dp_vs_no_dp", cohort, epsilon)
        how = (f"paired relative change vs the model before mitigation (the study's design), ε = {epsilon:g}, "
               f"N = {int(row['N']):,}, {cohort}; DP's own effect vs retraining without DP: {pct(own)}")
        out[key] = (100 * float(row["value"]), bool(row["ci_high"] < 0), how)
    return out


def audit_figure(audits: pd.DataFrame):
    """The one-run audit per run: the empirical 95% lower bound on ε against the claimed ε (a point above the
    diagonal would be a bug); the run without DP, which claims nothing, a dashed horizontal line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    dp = audits[audits["claimed_epsilon"].notna()]
    plain = audits[audits["claimed_epsilon"].isna()]
    top = max([1.0, *dp["claimed_epsilon"].tolist(), *audits["epsilon_lower_bound"].tolist()]) * 1.3
    ax.plot([0, top], [0, top], color="grey", ls=":", label="bound = claim")
    ax.scatter(dp["claimed_epsilon"], dp["epsilon_lower_bound"], color="C0", zorder=3, label="DP runs")
    for x in plain["epsilon_lower_bound"]:
        ax.axhline(float(x), color="C3", ls="--", label="run without DP (no claim)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("claimed ε (accountant)")
    ax.set_ylabel("empirical ε, 95% lower bound")
    ax.legend(fontsize="x-small")
    ax.grid(True, alpha=0.3)
    return fig


def gap_intervals(util: pd.DataFrame) -> str:
    """Chapter 5: the member gap's 95% intervals before and after DP, in points, each said to contain 0 or not."""
    def one(state: str) -> str:
        r = util[(util["metric"] == "member_gap") & (util["state"] == state)].iloc[0]
        holds = r["ci_low"] <= 0 <= r["ci_high"]
        return f"[{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}] ({'contains' if holds else 'excludes'} 0)"

    return f"{one('before')} before and {one('dp')} after"


def gap_matched_on(util: pd.DataFrame) -> str:
    """What the member gap's two sides were matched on (beyond size)."""
    gaps = util[util["metric"] == "member_gap"]
    if "matched_on" in gaps and gaps["matched_on"].notna().any():
        return str(gaps["matched_on"].dropna().iloc[0])
    return "studies per patient"
