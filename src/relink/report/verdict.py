"""The verdict: ``high``, ``elevated``, ``low`` or ``inconclusive``, from the rule :func:`rule_text` prints.

The rule reads the study-level, random-pool, rank-1 rows at every declared pool, both directions, every model of
the panel. ``elevated`` needs the lift's interval above 1 (a point estimate inside the sampling noise of guessing
is not evidence); ``low`` has to be shown (upper bounds under the thresholds, at least :data:`MIN_PATIENTS`
patients), never a default. The verdict is the most severe row, ``inconclusive`` between ``low`` and
``elevated``. An inconclusive verdict carries the patients that would decide it (:func:`patients_to_decide`:
widths shrink as one over the square root of the patients, so ``P (h / g)^2`` patients turn a half-width h into
the gap g to the threshold, if the estimates held).

What it is not: a membership test, a probability that any one patient is re-identified, or a bound on anything
outside the declared threat model (other side information, other pools, other models).
"""

from __future__ import annotations

import math
from typing import Any

from .threat import LEVELS_ORDER, ReportSpec

MIN_PATIENTS = 30  # fewer audited patients leave every verdict inconclusive: too few to stand for a release
# an estimate sitting on a threshold needs an audit without end: beyond this many times the audit (and beyond
# any plausible cohort) the page says no practical audit size would decide it
MAX_AUDIT_FACTOR = 100.0
MAX_PATIENTS = 10_000_000


def rule_text(spec: ReportSpec, level: float) -> list[str]:
    """The rule as it is printed, one line per level, thresholds filled in."""
    pct = f"{level:.0%}"
    return [
        f"high: the lower {pct} bound of the Recall@1 lift over chance exceeds {spec.lift_high:g}, "
        f"or the lower {pct} bound of the images re-linked beyond chance exceeds {spec.excess_high:g}",
        f"elevated: the lift exceeds {spec.lift_elevated:g} or the images re-linked beyond chance exceed "
        f"{spec.excess_elevated:g}, and the {pct} interval of the lift lies above 1 (chance)",
        f"low: the upper {pct} bounds of the lift and of the images re-linked beyond chance are at or below "
        f"{spec.lift_elevated:g} and {spec.excess_elevated:g}, on an audit of at least {MIN_PATIENTS} patients",
        "inconclusive: otherwise (the audit cannot tell low from elevated)",
    ]


SCOPE = ("Applied at every declared pool N, in both directions, at the study level and rank 1 (an image re-linked to "
         "its own report), for every model of the attacker panel; the verdict is the most severe of them, "
         "inconclusive counting above low.")


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _gt(a, b: float) -> bool:
    return _finite(a) and a > b


def _plain(x: float, significant: int) -> str:
    """``x`` to ``significant`` figures, never in exponent form (whole digits are all kept: 12,346)."""
    if x == 0:
        return "0"
    decimals = max(significant - 1 - int(math.floor(math.log10(abs(x)))), 0)
    return f"{round(x, decimals):,.{decimals}f}"


def as_ruled(x: Any, thresholds: tuple[float, ...] = ()) -> str:
    """A number as the rule read it: three significant figures, no exponent, and more figures where three
    would put it onto or across one of ``thresholds`` (100.4 against 100 is "100.4", never "100 > 100"). The
    reasons and the verdict table both print through this, so they show the same figure."""
    if x is None or not _finite(x):
        return "n/a"
    x = float(x)
    for significant in range(3, 17):
        shown = _plain(x, significant)
        v = float(shown.replace(",", ""))
        if all((v > t) == (x > t) and (v < t) == (x < t) for t in thresholds):
            return shown
    return repr(x)


def rule_thresholds(t: dict[str, float]) -> dict[str, tuple[float, ...]]:
    """The thresholds each verdict quantity is compared with (the arguments of :func:`as_ruled`), from the
    verdict's ``thresholds`` record or a spec's."""
    return {"lift": (1.0, t["lift_elevated"], t["lift_high"]), "excess": (t["excess_elevated"], t["excess_high"])}


def judge_row(row: dict[str, Any], spec: ReportSpec, n_patients: int | None = None) -> tuple[str, list[str]]:
    """Level of one risk row and the reasons, each naming the number as the rule used it."""
    lift, (lift_lo, lift_hi) = row["lift"], row["lift_ci"]
    excess, (excess_lo, excess_hi) = row["excess_images"], row["excess_images_ci"]
    t = rule_thresholds(spec.record())
    L = lambda x: as_ruled(x, t["lift"])  # noqa: E731
    X = lambda x: as_ruled(x, t["excess"])  # noqa: E731
    high = []
    if _gt(lift_lo, spec.lift_high):
        high.append(f"lift lower bound {L(lift_lo)} > {spec.lift_high:g}")
    if _gt(excess_lo, spec.excess_high):
        high.append(f"excess lower bound {X(excess_lo)} > {spec.excess_high:g}")
    if high:
        return "high", high
    if _gt(lift_lo, 1.0):
        elevated = []
        if _gt(lift, spec.lift_elevated):
            elevated.append(f"lift {L(lift)} > {spec.lift_elevated:g}")
        if _gt(excess, spec.excess_elevated):
            elevated.append(f"excess {X(excess)} > {spec.excess_elevated:g}")
        if elevated:
            return "elevated", elevated
    if not (_finite(lift_hi) and _finite(excess_hi)):
        return "inconclusive", ["no interval (too few patients or hits to compute one)"]
    if n_patients is not None and n_patients < MIN_PATIENTS:
        return "inconclusive", [f"{n_patients} audited patients < the minimum {MIN_PATIENTS}"]
    open_ = []
    if lift_hi > spec.lift_elevated:
        open_.append(f"lift upper bound {L(lift_hi)} > {spec.lift_elevated:g}")
    if excess_hi > spec.excess_elevated:
        open_.append(f"excess upper bound {X(excess_hi)} > {spec.excess_elevated:g}")
    return ("inconclusive", open_) if open_ else ("low", [])


def _scale(half: float, gap: float) -> float:
    """Factor on the audited patients that shrinks a half-width ``half`` to ``gap`` (inf when it cannot)."""
    if not (_finite(half) and _finite(gap)) or gap <= 0:
        return math.inf
    return max(1.0, (half / gap) ** 2)


def patients_to_decide(row: dict[str, Any], spec: ReportSpec, n_patients: int) -> int | None:
    """Audited patients that would decide an inconclusive row if its estimates held, low (both upper bounds down
    to the elevated thresholds) or elevated (the lift's lower bound above 1, an estimate above a threshold),
    whichever audit is smaller; None when more than :data:`MAX_AUDIT_FACTOR` times this audit or
    :data:`MAX_PATIENTS` would be needed."""
    lift, (lift_lo, lift_hi) = row["lift"], row["lift_ci"]
    excess, (_, excess_hi) = row["excess_images"], row["excess_images_ci"]
    if not (_finite(lift) and _finite(excess)):
        return None
    to_low = max(_scale(lift_hi - lift, spec.lift_elevated - lift), _scale(excess_hi - excess,
                                                                          spec.excess_elevated - excess))
    above = lift > spec.lift_elevated or excess > spec.excess_elevated
    to_elevated = _scale(lift - lift_lo, lift - 1.0) if above else math.inf
    factor = min(to_low, to_elevated)
    if not math.isfinite(factor) or factor > MAX_AUDIT_FACTOR or factor * n_patients > MAX_PATIENTS:
        return None
    return max(MIN_PATIENTS, int(math.ceil(factor * n_patients)))


def judge(rows: list[dict[str, Any]], spec: ReportSpec, level: float, n_patients: int | None = None) -> dict[str, Any]:
    """The verdict over the rows the rule covers, with every row's level and what set the verdict."""
    judged = []
    for row in rows:
        if row["level"] != "study" or row["negatives"] != "random" or row["K"] != 1 \
                or row["N"] not in spec.attacker_pools:
            continue
        lvl, reasons = judge_row(row, spec, n_patients)
        entry = {**({"model": row["model"]} if "model" in row else {}),
                 "direction": row["direction"], "N": row["N"], "level": lvl, "reasons": reasons,
                 "lift": row["lift"], "lift_ci": row["lift_ci"], "excess_images": row["excess_images"],
                 "excess_images_ci": row["excess_images_ci"]}
        if lvl == "inconclusive" and n_patients:
            entry["patients_to_decide"] = patients_to_decide(row, spec, n_patients)
        judged.append(entry)
    if not judged:
        raise ValueError("no risk row matches the verdict rule")
    worst = max(judged, key=lambda r: LEVELS_ORDER.index(r["level"]))["level"]
    out = {
        "level": worst,
        "rule": rule_text(spec, level),
        "scope": SCOPE,
        "thresholds": {"lift_elevated": spec.lift_elevated, "lift_high": spec.lift_high,
                       "excess_elevated": spec.excess_elevated, "excess_high": spec.excess_high,
                       "min_patients": MIN_PATIENTS},
        "rows": judged,
        "set_by": [r for r in judged if r["level"] == worst and worst != "low"],
        "audited_patients": n_patients,
    }
    if worst == "inconclusive":
        needed = [r.get("patients_to_decide") for r in judged if r["level"] == "inconclusive"]
        out["patients_to_decide"] = None if (not needed or any(n is None for n in needed)) else max(needed)
    return out


def decision(level: str) -> str:
    """The one-line decision a data-protection officer signs, from the verdict."""
    return {"low": "release as declared",
            "inconclusive": "inconclusive: do not release as declared until a larger audit decides it",
            }.get(level, "do not release as declared")
