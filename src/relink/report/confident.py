"""Confident re-links: the images a threshold attacker (it links an image to its top candidate only above a score
threshold) re-links at a precision it can act on, and the rule line they feed.

Input: metric-table rows (:mod:`relink.tables`) with ``metric`` ``relinked_best`` (an attacker who knows the best
threshold: the worst case for the custodian) or ``relinked_calibrated`` (a threshold calibrated on S held-apart
labelled pairs), ``K`` = 0, ``estimator`` = ``exact``, ``precision_target``, ``value`` = the expected share of the
queries re-linked correctly at that precision, ``ci_low``/``ci_high`` patient-clustered, ``chance`` (0 unless
shown otherwise), ``n_queries`` and ``model``. Counts for the release are shares times pi x M.

The rule (:func:`rule_line`) reads the best-threshold attacker at ``--confident-precision``, study level, for every
model, direction and declared pool. It can only raise the verdict to high; it never shows a verdict low, and it is
absent when the audit computed no confident rows.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .verdict import _finite

METRICS = ("relinked_best", "relinked_calibrated")
ATTACKERS = {"relinked_best": "knows the best threshold (the worst case)",
             "relinked_calibrated": "calibrates its threshold on held-apart labelled pairs"}
RULED = "relinked_best"
NOT_COMPUTED = ("confident re-links were not computed: the audit behind this report computed none (an attacker "
                "who links only above a score threshold)")


def rule_line(spec, level: float) -> str:
    """The rule as it is printed, thresholds filled in."""
    return (f"high (confident re-links): the lower {level:.0%} bound of the images re-linked at precision >= "
            f"{spec.confident_precision:g}, by an attacker who knows the best threshold, exceeds "
            f"{spec.confident_high:g}")


def confident_rows(frame: pd.DataFrame | None, pools: tuple[int, ...]) -> pd.DataFrame:
    """The confident rows of a metric table at the declared pools (random pools, exact), possibly none."""
    if frame is None or len(frame) == 0 or "metric" not in frame or "precision_target" not in frame:
        return pd.DataFrame()
    f = frame[frame["metric"].isin(METRICS) & frame["N"].isin(pools)]
    if "negatives" in f:
        f = f[f["negatives"] == "random"]
    if "estimator" in f:
        f = f[f["estimator"] == "exact"]
    return f


def section(frame: pd.DataFrame | None, spec, released: int, pools: tuple[int, ...]) -> dict[str, Any]:
    """The page's section and the rule's judgement: JSON-ready, numbers only (no identifier)."""
    scale = spec.report_coverage * released
    rows = confident_rows(frame, pools)
    out: dict[str, Any] = {"available": len(rows) > 0, "rule": rule_line(spec, spec.ci), "level": None, "note": None,
                           "set_by": [], "rows": [], "table": [], "attackers": ATTACKERS,
                           "precision": spec.confident_precision, "threshold_images": spec.confident_high}
    if not out["available"]:
        out["note"] = NOT_COMPUTED
        return out
    for r in rows.itertuples(index=False):
        lo, hi = float(r.ci_low), float(r.ci_high)
        chance = float(r.chance) if _finite(float(r.chance)) else float("nan")
        out["rows"].append({
            "model": str(getattr(r, "model", "") or ""), "attacker": r.metric, "direction": r.direction,
            "level": r.level, "N": int(r.N), "precision_target": float(r.precision_target),
            "share": float(r.value), "share_ci": [lo, hi],
            "images": scale * float(r.value), "images_ci": [scale * lo, scale * hi],
            "chance_images": scale * chance, "n_queries": int(r.n_queries)})
    out["table"] = page_table(out["rows"])
    ruled = _ruled(out["rows"], spec.confident_precision)
    if not ruled:
        out["note"] = (f"the audit computed no rows at precision >= {spec.confident_precision:g} for an attacker who "
                       "knows the best threshold, so the confident rule was not applied")
        return out
    for r in ruled:
        low = r["images_ci"][0]
        if _finite(low) and low > spec.confident_high:
            out["set_by"].append({"model": r["model"], "direction": r["direction"], "N": r["N"], "level": "high",
                                  "reasons": [f"images re-linked at precision >= {spec.confident_precision:g}: lower "
                                              f"bound {low:,.1f} > {spec.confident_high:g}"]})
    out["level"] = "high" if out["set_by"] else "not high"
    return out


def _ruled(rows: list[dict[str, Any]], precision: float) -> list[dict[str, Any]]:
    """The rows the rule reads: the best-threshold attacker, study level, at the rule's precision."""
    return [r for r in rows if r["attacker"] == RULED and r["level"] == "study"
            and math.isclose(r["precision_target"], precision)]


def high_at(confident: dict[str, Any], factor: float) -> bool:
    """Whether the rule says high for a release ``factor`` times the declared size (counts scale with M)."""
    if confident["level"] is None:
        return False
    return any(_finite(r["images_ci"][0]) and r["images_ci"][0] * factor > confident["threshold_images"]
               for r in _ruled(confident["rows"], confident["precision"]))


def page_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's rows: study level, one per (model, attacker, direction), the precision targets side by side
    (the JSON keeps every row)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r["level"] != "study":
            continue
        key = (r["model"], r["attacker"], r["direction"], r["N"])
        entry = out.setdefault(key, {"model": r["model"], "attacker": r["attacker"], "direction": r["direction"],
                                     "N": r["N"], "targets": []})
        entry["targets"].append({k: r[k] for k in ("precision_target", "images", "images_ci", "share")})
    for entry in out.values():
        entry["targets"].sort(key=lambda t: t["precision_target"])
    return list(out.values())


def verdict_with(judged: dict[str, Any], confident: dict[str, Any], decide) -> dict[str, Any]:
    """The recall verdict with the confident rule applied: its line printed with the rule whenever confident rows
    exist, and the level raised to high when the rule says so (``decide``: level -> decision line)."""
    if confident["level"] is None:  # no rows the rule reads: it is neither printed nor applied
        return judged
    out = dict(judged, rule=[*judged["rule"], confident["rule"]])
    if confident["level"] == "high":
        before = judged["set_by"] if judged["level"] == "high" else []
        out.update(level="high", set_by=[*before, *confident["set_by"]], decision=decide("high"))
        out.pop("patients_to_decide", None)
    return out
