"""The chapter beyond the study: what result ``attacker``'s tables say, as numbers, rows and sentences.

``confident.parquet`` (its contract: :mod:`relink.paper.results.attacker`) holds, per rung and state, the
rows ``relinked_best`` and ``relinked_calibrated`` at each ``precision_target``. Numbers are formatted here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ATTACKERS = {"relinked_best": "best threshold", "relinked_calibrated": "calibrated threshold"}
STATES = {"before": "before mitigation", "dp": "DP heads", "retrained": "heads re-trained on public pairs"}


def row(confident: pd.DataFrame, metric: str, target: float, state: str = "before",
        rung: int | None = None) -> pd.Series:
    """The one confident row of ``metric`` at precision ``target`` (the strongest rung when ``rung`` is None)."""
    rows = confident[(confident["metric"] == metric) & np.isclose(confident["precision_target"].astype(float), target)
                     & (confident["state"] == state)]
    rows = rows[rows["rung"] == (rows["rung"].max() if rung is None else rung)]
    if len(rows) != 1:
        raise LookupError(f"expected one {metric} row at precision {target:g} ({state}), found {len(rows)}")
    return rows.iloc[0]


def percent(r: pd.Series) -> str:
    """"12.3% (95% CI 10.1–14.6%)": a share of queries with its interval, as the chapter writes it."""
    value, lo, hi = 100 * float(r["value"]), 100 * float(r["ci_low"]), 100 * float(r["ci_high"])
    digits = 2 if max(value, hi) < 1 else 1
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.{digits}f}% (no interval)"
    return f"{value:.{digits}f}% (95% CI {lo:.{digits}f}–{hi:.{digits}f}%)"


def images(r: pd.Series) -> str:
    """The expected number of re-linked images out of the queries: "about 41 of 2,400 images"."""
    n = int(r["n_queries"])
    return f"about {float(r['value']) * n:,.0f} of {n:,} images"


def table(confident: pd.DataFrame) -> pd.DataFrame:
    """One row per model, heads and attacker; per precision target, the share re-linked (%) and its interval."""
    out = []
    targets = sorted(confident["precision_target"].dropna().astype(float).unique())
    order = {s: i for i, s in enumerate(STATES)}
    groups = confident[["rung", "state"]].drop_duplicates().itertuples(index=False)
    for rung, state in sorted(groups, key=lambda g: (g[0], order.get(g[1], len(order)))):
        for metric, who in ATTACKERS.items():
            first = row(confident, metric, targets[0], state, rung)
            line: dict[str, Any] = {"model": str(first["model"]), "Heads": STATES.get(state, state),
                                    "Attacker": who, "Queries": int(first["n_queries"])}
            for target in targets:
                line[f"Re-linked at precision ≥ {target:g}"] = percent(row(confident, metric, target, state, rung))
            out.append(line)
    return pd.DataFrame(out)


def glue_values(confident: pd.DataFrame, epsilon: float) -> dict[str, Any]:
    """The chapter's numbers: the strongest model before and after DP, at each precision target."""
    top = row(confident, "relinked_best", 0.9)
    out: dict[str, Any] = {"attacker_model": str(top["model"]), "attacker_n": int(top["N"]),
                           "attacker_queries": int(top["n_queries"]), "attacker_epsilon": float(epsilon)}
    for target in (0.9, 0.99):
        tag = f"{round(100 * target)}"
        for metric, short in (("relinked_best", "best"), ("relinked_calibrated", "cal")):
            for state in ("before", "dp"):
                r = row(confident, metric, target, state)
                key = f"conf_{short}{tag}" + ("_dp" if state == "dp" else "")
                out[key] = 100 * float(r["value"])
                out[key + "_text"] = percent(r)
                out[key + "_images"] = images(r)
    out["attacker_sentence"] = headline_sentence(confident, epsilon)
    out["retrained_sentence"] = retrained_sentence(confident)
    return out


def has_state(confident: pd.DataFrame, state: str) -> bool:
    return bool((confident["state"] == state).any())


def retrained_sentence(confident: pd.DataFrame) -> str:
    """What heads re-trained on public pairs re-link, and whether the DP heads protect anything against them."""
    if not has_state(confident, "retrained"):
        return ("This profile has no external cohort, so the attacker who re-trains heads on public pairs is not "
                "applicable here.")
    before, dp = row(confident, "relinked_best", 0.9), row(confident, "relinked_best", 0.9, "dp")
    again = row(confident, "relinked_best", 0.9, "retrained")
    text = (f"Heads re-trained without DP on the external cohort's pairs (a public set an attacker could hold) over "
            f"the same trunk re-link {percent(again)} of the held-out images at precision 0.9, against "
            f"{percent(before)} with the original heads and {percent(dp)} with the DP heads. ")
    if float(before["value"]) == 0.0 and float(again["value"]) == 0.0:
        return text + ("Neither the original nor the re-trained heads re-link an image at this precision here, so "
                       "this comparison cannot tell whether the DP heads protect anything against this attacker.")
    if float(again["ci_high"]) >= float(before["value"]):
        return text + ("They re-link as well as the original heads within their interval: against this attacker "
                       "the DP heads protect nothing.")
    if float(again["ci_low"]) > float(dp["ci_high"]):
        return text + ("They recover part of what the DP heads removed: against this attacker the DP heads protect "
                       "only in part.")
    return text + "They re-link no more than the DP heads: this attacker gains nothing over the released heads."


def headline_sentence(confident: pd.DataFrame, epsilon: float) -> str:
    """What the stronger attacker achieves with the strongest model, and what the DP heads leave him."""
    best, cal = row(confident, "relinked_best", 0.9), row(confident, "relinked_calibrated", 0.9)
    best99 = row(confident, "relinked_best", 0.99)
    dp, dp99 = row(confident, "relinked_best", 0.9, "dp"), row(confident, "relinked_best", 0.99, "dp")
    return (f"With the strongest model ({best['model']}) in pools of {int(best['N']):,}, an attacker who knows where "
            f"to set the threshold re-links {percent(best)} of the held-out images at precision 0.9 "
            f"({images(best)}) and {percent(best99)} at precision 0.99; one who calibrates the threshold on "
            f"held-apart labelled pairs re-links {percent(cal)} at precision 0.9. With the DP heads "
            f"(ε = {epsilon:g}) the first attacker re-links {percent(dp)} at precision 0.9 and {percent(dp99)} "
            "at precision 0.99.")


def claim_rows(confident: pd.DataFrame, epsilon: float) -> dict[str, tuple]:
    """The claims table's rows beyond the study (no study value): key -> (value %, None, how, interval)."""
    out = {}
    for key, metric, target, state in (("confident_090", "relinked_best", 0.9, "before"),
                                       ("confident_099", "relinked_best", 0.99, "before"),
                                       ("confident_090_calibrated", "relinked_calibrated", 0.9, "before"),
                                       ("confident_090_dp", "relinked_best", 0.9, "dp"),
                                       ("confident_090_retrained", "relinked_best", 0.9, "retrained")):
        if not has_state(confident, state):
            out[key] = (None, None, "no external cohort in this profile")
            continue
        r = row(confident, metric, target, state)
        how = f"{r['model']}, N = {int(r['N']):,}, {int(r['n_queries']):,} queries" + (
            f", DP heads at ε = {epsilon:g}" if state == "dp" else
            ", heads re-trained on the external cohort's pairs" if state == "retrained" else "")
        out[key] = (100 * float(r["value"]), None, how,
                    {"low": 100 * float(r["ci_low"]), "high": 100 * float(r["ci_high"]),
                     "of": "95% interval, images re-linked (%)"})
    return out


def curve_points(curves: pd.DataFrame, model: str, state: str) -> pd.DataFrame:
    """One curve (recall and precision in %), in threshold order, from the loosest threshold to the strictest."""
    rows = curves[(curves["model"] == model) & (curves["state"] == state)].sort_values("threshold")
    return pd.DataFrame({"recall": 100 * rows["recall"].to_numpy(float),
                         "precision": 100 * rows["precision"].to_numpy(float)})


def ladder(confident: pd.DataFrame) -> list[str]:
    """The models in ladder order."""
    return list(confident.drop_duplicates("rung").sort_values("rung")["model"])


def panel_table(panel: dict) -> pd.DataFrame:
    """The attacker panel, one row per model: its role and its own verdict (upper case, as the report prints)."""
    roles = {"custodian": "custodian's model", "attacker": "attacker's model"}
    return pd.DataFrame([{"model": m["model"], "Role": roles.get(m["role"], m["role"]),
                          "Verdict": str(m["verdict"]).upper()} for m in panel["models"]])


def panel_sentence(panel: dict) -> str:
    """The panel's verdict in the report's words: the worst over the models, and which model sets it."""
    worst = str(panel["worst"]).upper()
    setters = [m["model"] for m in panel["models"] if str(m["verdict"]).upper() == worst]
    text = (f"With every rung of the ladder as an attacker's model beside the custodian's (the strongest rung), "
            f"in pools of {int(panel['pool']):,}, the custodian's report gives **{worst}**, the worst verdict over "
            f"the {int(panel['size'])} models")
    text += f", set by {', '.join(setters)}." if setters else "."
    return text + (f" {panel['sentence']}" if panel.get("sentence") else "")
