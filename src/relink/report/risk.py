"""Headline risk in absolute terms: expected re-linked images, with intervals, and the sentence that says it.

If the M released images resemble the audited ones, ``Recall@K(N) x M`` are expected re-linked; its interval is
the recall interval times M (it describes the audit's sampling, not the release's own luck). ``excess`` is what
the model adds beyond the ``chance x M`` a blind attacker re-links. ``patient`` level: any report of the image's
patient counts (the patient is re-identified even if the study is not).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def risk_rows(frame: pd.DataFrame, released: int, coverage: float = 1.0) -> list[dict[str, Any]]:
    """One JSON-ready record per recall row of ``frame`` (a summary), with counts scaled to ``coverage x released``
    (the released images whose own report the attacker holds)."""
    out = []
    scale = coverage * released
    for row in frame.itertuples(index=False):
        if row.metric != "recall":
            continue
        chance = float(row.chance)
        rec = {
            "direction": row.direction, "level": row.level, "negatives": row.negatives,
            "N": int(row.N), "K": int(row.K),
            "recall": float(row.value), "recall_ci": [float(row.ci_low), float(row.ci_high)], "chance": chance,
            "lift": div(row.value, chance), "lift_ci": [div(row.ci_low, chance), div(row.ci_high, chance)],
            "expected_images": scale * float(row.value),
            "expected_images_ci": [scale * float(row.ci_low), scale * float(row.ci_high)],
            "chance_images": scale * chance,
            "excess_images": scale * (float(row.value) - chance),
            "excess_images_ci": [scale * (float(row.ci_low) - chance), scale * (float(row.ci_high) - chance)],
            "n_queries": int(row.n_queries), "coverage": float(row.coverage),
        }
        out.append(rec)
    return out


def div(a: float, b: float) -> float:
    """``a / b``, NaN where ``b`` is not positive or ``a`` not finite (a lift without a chance)."""
    a, b = float(a), float(b)
    return a / b if b > 0 and math.isfinite(a) else float("nan")


def about(x: float) -> str:
    """A count as a person says it: 430, 43, 4.4, 0.3 (two significant figures at most above 100)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        digits = int(math.floor(math.log10(abs(x)))) - 1
        return f"{int(round(x, -digits)):,}"
    if abs(x) >= 10:
        return f"{int(round(x)):,}"
    if abs(x) >= 0.05:
        return f"{x:.1f}"
    return "0"


def interval(ci: list[float], level: float) -> str:
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    return f"{level:.0%} CI {about(lo)}\u2013{about(hi)}"


def sentence(row: dict[str, Any], released: int, level: float, coverage: float = 1.0) -> str:
    """The headline sentence for one risk row, generated from its numbers."""
    where = "at rank 1" if row["K"] == 1 else f"within the top {row['K']}"
    who = "their own report" if row["level"] == "study" else "a report of their own patient"
    share = "" if coverage >= 1 else f" (for the {coverage:.0%} of them whose report it holds)"
    if row["direction"] == "image_to_report":
        holder = f"an attacker with the model, with each image's own report among {row['N']:,} candidates{share}"
    else:
        holder = f"an attacker with the model, with each report's own image among {row['N']:,} candidates{share}"
    return (f"About {about(row['expected_images'])} of {released:,} released images would be re-linked to {who} "
            f"{where} by {holder} ({interval(row['expected_images_ci'], level)}); guessing alone would re-link "
            f"about {about(row['chance_images'])}, so the model's lift over chance is {row['lift']:.3g}x.")


def headline(rows: list[dict[str, Any]], pool: int, released: int, level: float,
             coverage: float = 1.0) -> dict[str, Any]:
    """The page's first sentence: image to report, study level, rank 1, at the first declared pool."""
    row = next(r for r in rows if r["direction"] == "image_to_report" and r["level"] == "study"
               and r["negatives"] == "random" and r["N"] == pool and r["K"] == 1)
    return {"sentence": sentence(row, released, level, coverage), **{k: row[k] for k in (
        "direction", "level", "N", "K", "expected_images", "expected_images_ci", "chance_images", "lift", "lift_ci")}}
