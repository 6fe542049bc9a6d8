"""Sentences the book glues where a number alone could not say it, numbers formatted here, once.

A profile without an external cohort gets a sentence that says so ("not applicable"), so that no page
ever shows ``nan``.
"""

from __future__ import annotations

import pandas as pd

from ..report.render import DIRECTIONS
from . import summaries as S

NO_EXTERNAL = "This profile has no external cohort, so {what} is not applicable here."


def no_external(what: str) -> str:
    return NO_EXTERNAL.format(what=what)


def external_cohort(summary: pd.DataFrame) -> str:
    """Chapter 1: the external cohort's size, or that there is none (``summary``: the cohorts table)."""
    external = summary[summary["role"] == "external"]
    if external.empty:
        return no_external("evaluation on a second hospital's data")
    name = str(external["cohort"].iloc[0])
    return (f"The external cohort ({name}), used only for evaluation, holds {int(external['pairs'].sum()):,} pairs "
            f"from {int(external['patients'].sum()):,} patients.")


def external_relinkage(audit: pd.DataFrame, model: str, external: str | None) -> str:
    """Chapter 2: the strongest model's Recall@1 on the external cohort, or that there is none."""
    if external is None:
        return no_external("re-linkage on a second hospital's data without retraining")
    N = S.largest_finite_pool(audit, want=100, cohort=external, K=1, model=model)
    row = S.one(audit, model=model, cohort=external, N=N, K=1)
    return (f"On the external cohort ({external}) the strongest model's Recall@1 at N = {N:,} is "
            f"{100 * row['value']:.1f}% ({row['lift']:.1f} times chance, 95% CI "
            f"{row['ci_low'] / row['chance']:.1f}–{row['ci_high'] / row['chance']:.1f}), without retraining.")


def target_pool(row: pd.Series) -> str:
    """Chapter 2: the headline pool's lift, when it is larger than 100 (else nothing: it was just said)."""
    if int(row["N"]) <= 100:
        return ""
    return (f"In pools of {int(row['N']):,} it is {row['lift']:.1f} times chance (95% CI "
            f"{row['ci_low'] / row['chance']:.1f}–{row['ci_high'] / row['chance']:.1f}).")


def target_pool_clause(row: pd.Series) -> str:
    """The introduction's clause for the headline pool (empty when it is the pool of 100)."""
    return "" if int(row["N"]) <= 100 else f" and {row['lift']:.1f} times chance in pools of {int(row['N']):,}"


def dp_external(effects: pd.DataFrame, epsilon: float, external: str | None) -> str:
    """Chapter 4 and the introduction: what the DP heads do to the external cohort, or that there is none."""
    if external is None:
        return no_external("the transfer of the mitigated heads to a second hospital's data")
    N = S.largest_finite_pool(effects, cohort=external)
    before = S.one(effects, state="before", cohort=external, N=N, K=1)
    after = S.one(effects, state="dp", epsilon=epsilon, cohort=external, N=N, K=1)
    change = 100 * S.relative_change(before["value"], after["value"])
    return (f"The same heads applied to the external cohort ({external}), without retraining, change its Recall@1 "
            f"at N = {N:,} (the largest pool it fills) by {change:+.1f}%.")


def split_sentence(profile, summary: pd.DataFrame) -> str:
    """Which split produced a profile's numbers (``profile``: a :class:`~relink.paper.profiles.Profile`)."""
    internal = summary[summary["role"] == "internal"]
    name = str(internal["cohort"].iloc[0])
    held = int(internal.loc[internal["split"] == profile.eval_split, "pairs"].sum())
    if not profile.credentialed:
        # the synthetic cohorts' names already say so ("synthetic-internal"): no "synthetic synthetic-..."
        cohort = name if name.startswith("synthetic") else f"synthetic {name}"
        return (f"These numbers come from the generator's patient-disjoint split of the {cohort} cohort: "
                f"{held:,} held-out pairs (split {profile.eval_split}).")
    if profile.split == "study":
        return (f"These numbers come from a seeded, patient-disjoint re-split of {name} sized to the study "
                f"(split = study, seed {profile.split_seed}): a held-out set of at least "
                f"{profile.heldout_pairs:,} pairs ({held:,} drawn, whole patients only), a validation bank a tenth "
                f"of that, the rest for training; see the reproducibility appendix.")
    return (f"These numbers come from the official {name} split: its {profile.eval_split} split of {held:,} pairs is "
            f"the held-out set, not a set the size of the study's (set split = study for that; see the "
            f"reproducibility appendix).")


def dp_caveats(privacy: dict, sweep: pd.DataFrame) -> str:
    """Chapter 4: what one ε covers, and whether the published heads carry it (from ``privacy.json``)."""
    runs = len(sweep)
    private = int(sweep["private"].astype(bool).sum()) if "private" in sweep.columns else runs
    unit = privacy.get("privacy_unit", "pair")
    public = runs - private
    without = "" if not public else (f" and {public} without DP, which carries no guarantee" if public == 1
                                     else f" and {public} without DP, which carry no guarantee")
    text = (f"Each ε is the guarantee of one run for one {unit}: this chapter publishes {runs} runs on the same "
            f"private split ({private} private{without}), so the chapter as a whole is a study, not one ε-DP "
            f"release; a custodian who releases one set of heads gets that run's ε, and the model before "
            f"mitigation carries no guarantee at all.")
    if privacy.get("for_release") is False:
        reason = privacy.get("release_reason") or privacy.get("release_note") or "for study, not for release"
        text += (f" No heads here are for release: {reason[:1].lower() + reason[1:].rstrip('.')}. The runs "
                 "also use a published noise seed so that the book can be rebuilt exactly; `relink mitigate` "
                 "keeps the noise secret by default, starts the heads from a random initialisation, and says "
                 "whether its heads may be released.")
    if privacy.get("bank_note"):
        bank = privacy["bank_note"]
        text += f" The guarantee does not reach the bank: {bank[:1].lower() + bank[1:].rstrip('.')}."
    return text


def report_rule(verdict: dict) -> str:
    """The custodian chapter: the verdict's rule as the report printed it, and what set the verdict."""
    rules = "; ".join(r.rstrip(".") for r in verdict.get("rule", []))
    text = f"The rule, with this report's thresholds (all settable): {rules}."
    # each row that set the verdict, as the report page names it: direction, pool and the reasons
    set_by = [f"{DIRECTIONS.get(r['direction'], r['direction'])} at N = {r['N']:,} ({'; '.join(r['reasons'])})"
              for r in verdict.get("set_by", [])]
    if set_by and verdict.get("level") == "inconclusive":
        n = verdict.get("patients_to_decide")
        text += (f" It is inconclusive at: {'; '.join(set_by)}"
                 + (f"; about {n:,} audited patients would decide it." if n else "."))
    elif set_by:
        text += f" It was set by: {'; '.join(set_by)}."
    return text
