"""The verdict: ``low``, ``elevated`` or ``high``, from a rule printed on the page with its thresholds.

The rule is applied to every declared pool N and both directions, at the
study level, random pools, rank 1 (an image re-linked to its own report);
the verdict is the worst of them, since the attacker chooses the direction
and the custodian declared every pool as possible. For each such row, with
the lift L (Recall@1 / chance) and the excess E (images re-linked beyond
what guessing gives, for the M released), each with its interval:

* ``high``     — lower bound of L > ``lift_high``, or lower bound of E > ``excess_high``;
* ``elevated`` — L > ``lift_elevated`` or E > ``excess_elevated``, and the
  interval excludes chance (lower bound of L > 1): a point estimate inside
  sampling noise of guessing is not evidence of anything;
* ``low``      — otherwise.

What it is not: a membership test, a probability that any one patient is
re-identified, or a bound on anything outside the declared threat model
(an attacker with other side information, other pools, other models).
"""

from __future__ import annotations

import math
from typing import Any

from .threat import LEVELS_ORDER, ReportSpec


def rule_text(spec: ReportSpec, level: float) -> list[str]:
    """The rule as it is printed, one line per level, thresholds filled in."""
    pct = f"{level:.0%}"
    return [
        f"high: the lower {pct} bound of the Recall@1 lift over chance exceeds {spec.lift_high:g}, "
        f"or the lower {pct} bound of the images re-linked beyond chance exceeds {spec.excess_high:g}",
        f"elevated: the lift exceeds {spec.lift_elevated:g} or the images re-linked beyond chance exceed "
        f"{spec.excess_elevated:g}, and the {pct} interval of the lift lies above 1 (chance)",
        "low: otherwise",
    ]


SCOPE = ("Applied at every declared pool N, in both directions, at the study level and rank 1 (an image re-linked to "
         "its own report); the verdict is the worst of them.")


def _gt(a: float, b: float) -> bool:
    return a is not None and math.isfinite(a) and a > b


def judge_row(row: dict[str, Any], spec: ReportSpec) -> tuple[str, list[str]]:
    """Level of one risk row and the reasons (empty for ``low``)."""
    lift, (lift_lo, _) = row["lift"], row["lift_ci"]
    excess, (excess_lo, _) = row["excess_images"], row["excess_images_ci"]
    high = []
    if _gt(lift_lo, spec.lift_high):
        high.append(f"lift lower bound {lift_lo:.3g} > {spec.lift_high:g}")
    if _gt(excess_lo, spec.excess_high):
        high.append(f"excess lower bound {excess_lo:.3g} > {spec.excess_high:g}")
    if high:
        return "high", high
    if not _gt(lift_lo, 1.0):
        return "low", []
    elevated = []
    if _gt(lift, spec.lift_elevated):
        elevated.append(f"lift {lift:.3g} > {spec.lift_elevated:g}")
    if _gt(excess, spec.excess_elevated):
        elevated.append(f"excess {excess:.3g} > {spec.excess_elevated:g}")
    return ("elevated", elevated) if elevated else ("low", [])


def judge(rows: list[dict[str, Any]], spec: ReportSpec, level: float) -> dict[str, Any]:
    """The verdict over the rows the rule covers, with every row's level and what set the verdict."""
    judged = []
    for row in rows:
        if row["level"] != "study" or row["negatives"] != "random" or row["K"] != 1 \
                or row["N"] not in spec.attacker_pools:
            continue
        lvl, reasons = judge_row(row, spec)
        judged.append({"direction": row["direction"], "N": row["N"], "level": lvl, "reasons": reasons,
                       "lift": row["lift"], "lift_ci": row["lift_ci"], "excess_images": row["excess_images"],
                       "excess_images_ci": row["excess_images_ci"]})
    if not judged:
        raise ValueError("no risk row matches the verdict rule")
    worst = max(judged, key=lambda r: LEVELS_ORDER.index(r["level"]))["level"]
    return {
        "level": worst,
        "rule": rule_text(spec, level),
        "scope": SCOPE,
        "thresholds": {"lift_elevated": spec.lift_elevated, "lift_high": spec.lift_high,
                       "excess_elevated": spec.excess_elevated, "excess_high": spec.excess_high},
        "rows": judged,
        "set_by": [r for r in judged if r["level"] == worst and worst != "low"],
    }
