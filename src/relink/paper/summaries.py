"""Plain functions that pick numbers and small frames out of the tidy tables (what notebooks glue).

Tables carry :data:`relink.tables.METRIC_COLUMNS` plus ``pool`` (``"100"``, ..., ``"full"``), ``rung`` and
``role`` (``internal`` | ``external``); a missing row is a :class:`LookupError` naming the filter, never NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DEFAULTS = {"direction": "image_to_report", "negatives": "random", "level": "study",
            "estimator": "exact", "metric": "recall"}


def pick(table: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    """Rows matching ``filters`` over :data:`DEFAULTS` (a default whose column a table lacks is ignored;
    ``None``: any value)."""
    want = {**DEFAULTS, **filters}
    mask = np.ones(len(table), dtype=bool)
    for col, value in want.items():
        if col not in table.columns:
            if col in filters:
                raise LookupError(f"table has no column {col!r}")
            continue
        if value is None:
            continue
        if col == "epsilon":
            mask &= np.isclose(table[col].to_numpy(dtype=float), float(value))
            continue
        mask &= (table[col] == value).to_numpy()
    return table.loc[mask]


def one(table: pd.DataFrame, **filters: Any) -> pd.Series:
    """The single row matching ``filters``; LookupError if none or several. A finite pool as large as the
    candidate set is the full pool: when ``N`` matches both rows, the finite one is returned."""
    rows = pick(table, **filters)
    if len(rows) == 2 and "pool" in rows.columns and "pool" not in filters and rows["N"].nunique() == 1:
        finite = rows[rows["pool"] != "full"]
        if len(finite) == 1:
            return finite.iloc[0]
    if len(rows) != 1:
        raise LookupError(f"expected one row for {filters}, found {len(rows)}")
    return rows.iloc[0]


def pool_label(pool: Any, N: Any) -> str:
    """How a reader sees a pool: its size, or ``full (5,317)`` for the whole candidate set."""
    return f"full ({int(N):,})" if str(pool) == "full" else f"{int(N):,}"


def strongest_model(table: pd.DataFrame) -> str:
    """The ladder's last rung (highest ``rung``)."""
    return str(table.sort_values("rung")["model"].iloc[-1])


def ladder_order(table: pd.DataFrame) -> list[str]:
    return list(table.sort_values("rung").drop_duplicates("model")["model"])


def full_pool_size(table: pd.DataFrame, **filters: Any) -> int:
    """Candidate count of the full pool for the rows matching ``filters``."""
    rows = pick(table, pool="full", **filters) if "pool" in table.columns else pick(table, **filters)
    return int(rows["N"].max())


def is_monotone(values: list[float]) -> bool:
    """Whether every step rises."""
    return bool(np.all(np.diff(np.asarray(values, dtype=float)) > 0))


def relative_change(before: float, after: float) -> float:
    """(after - before) / before, as a fraction (-0.618 = a 61.8% drop)."""
    return (after - before) / before if before else float("nan")


def cohort_names(table: pd.DataFrame) -> tuple[str, str | None]:
    """(internal cohort name, external cohort name or ``None``) from the ``role`` column."""
    roles = table.drop_duplicates("cohort").set_index("role")["cohort"]
    return str(roles["internal"]), (str(roles["external"]) if "external" in roles.index else None)


def largest_finite_pool(table: pd.DataFrame, want: int = 10000, **filters: Any) -> int:
    """The headline pool: ``want`` when evaluated, else the largest finite pool (not ``full``)."""
    rows = pick(table, **filters)
    finite = sorted(int(n) for n in rows.loc[rows["pool"] != "full", "N"].unique())
    if not finite:
        raise LookupError(f"no finite pool for {filters}")
    return want if want in finite else finite[-1]


def largest_covered_pool(table: pd.DataFrame, min_coverage: float = 0.5, **filters: Any) -> int:
    """Largest finite pool whose coverage is at least ``min_coverage`` (the smallest pool if none is)."""
    rows = pick(table, K=1, **filters)
    rows = rows[rows["pool"] != "full"].sort_values("N")
    ok = rows[rows["coverage"] >= min_coverage]
    return int((ok if len(ok) else rows)["N"].iloc[-1 if len(ok) else 0])


def _pool_order(rows: pd.DataFrame) -> list[tuple[str, int]]:
    """(pool, N) in reading order: finite pools by size, then the full pool."""
    keys = rows[["pool", "N"]].drop_duplicates()
    return sorted(((str(p), int(n)) for p, n in keys.itertuples(index=False)), key=lambda t: (t[0] == "full", t[1]))


def wide_table(table: pd.DataFrame, model: str, cohort: str) -> pd.DataFrame:
    """Recall (%) of one model and cohort: a row per direction, level and pool (finite pools by size,
    then the full pool), a column ``Recall@K (%)`` per K."""
    rows = pick(table, model=model, cohort=cohort, direction=None, level=None)
    out = []
    for (direction, level), part in rows.groupby(["direction", "level"], sort=False):
        for pool, N in _pool_order(part):
            line: dict[str, Any] = {"direction": direction, "level": level, "pool": pool_label(pool, N)}
            at = part[(part["pool"].astype(str) == pool) & (part["N"] == N)]
            for K in sorted(part["K"].unique()):
                hit = at[at["K"] == K]
                line[f"Recall@{int(K)} (%)"] = round(100 * float(hit["value"].iloc[0]), 2) if len(hit) else np.nan
            out.append(line)
    return pd.DataFrame(out)


def coverage_table(table: pd.DataFrame, model: str, cohort: str) -> pd.DataFrame:
    """Coverage (% of queries) per kind of distractors (rows) and finite pool (columns ``N = n``)."""
    rows = pick(table, model=model, cohort=cohort, K=1, negatives=None)
    rows = rows[rows["pool"] != "full"]
    out = (100 * rows.pivot_table(index="negatives", columns="N", values="coverage", sort=False)).round(1)
    out.columns = [f"N = {int(n):,}" for n in out.columns]
    return out.reset_index()


def hard_negative_table(table: pd.DataFrame, cohort: str, N: int, K: int = 1) -> pd.DataFrame:
    """Lift at pool ``N`` for every model (rows, ladder order): random pools over all queries, matched
    pools, random pools over the same covered queries (``paired_random``, when the table has it) and
    the matched pools' coverage (%)."""
    rows = pick(table, cohort=cohort, N=N, K=K, negatives=None)
    rows = rows[rows["pool"] != "full"] if (rows["pool"] != "full").any() else rows
    out = rows.pivot_table(index=["rung", "model"], columns="negatives", values="lift", sort=False)
    out.columns.name = None
    matched = rows[rows["negatives"] == "pathology_matched"].set_index(["rung", "model"])
    if "paired_random_lift" in matched.columns:
        out.insert(out.columns.get_loc("pathology_matched") + 1, "paired_random", matched["paired_random_lift"])
    out["coverage_%"] = 100 * matched["coverage"]
    return out.round(2).reset_index()


def before_after_table(effects: pd.DataFrame, epsilon: float, K: int = 1) -> pd.DataFrame:
    """Recall@K (%) per cohort and pool: before, after DP at ``epsilon``, and relative change."""
    before = pick(effects, state="before", K=K)
    after = pick(effects, state="dp", epsilon=epsilon, K=K)
    keys = ["cohort", "pool", "N"]
    merged = before[keys + ["value"]].merge(after[keys + ["value"]], on=keys, suffixes=("_before", "_after"))
    order = {c: i for i, c in enumerate(dict.fromkeys(before["cohort"]))}  # internal first, as evaluated
    merged = merged.assign(_order=merged["cohort"].map(order)).sort_values(["_order", "N"])
    return pd.DataFrame({
        "cohort": merged["cohort"],
        "pool": [pool_label(p, n) for p, n in zip(merged["pool"], merged["N"])],
        "recall_before_%": (100 * merged["value_before"]).round(3),
        "recall_after_%": (100 * merged["value_after"]).round(3),
        "relative_change_%": (100 * (merged["value_after"] - merged["value_before"]) / merged["value_before"]).round(1),
    }).reset_index(drop=True)


#: how chapter 4 names the three heads of result ``retrained``
HEADS = {"original": "original heads", "dp": "DP heads", "retrained": "heads re-trained on public pairs"}


def retrained_table(contrasts: pd.DataFrame) -> pd.DataFrame:
    """Result ``retrained``'s paired contrasts as chapter 4 shows them."""
    return pd.DataFrame({
        "Heads": [f"{HEADS[b]} against {HEADS[a]}" for a, b in zip(contrasts["a"], contrasts["b"])],
        "N": contrasts["N"].astype(int),
        "relative_change_%": (100 * contrasts["value"]).round(1),
        # a relative change of a Recall@1 of 0 has no interval: said in words, never as nan
        "95% paired interval (%)": [f"{100 * lo:+.1f} to {100 * hi:+.1f}" if np.isfinite([lo, hi]).all() else "n/a"
                                    for lo, hi in zip(contrasts["ci_low"], contrasts["ci_high"])],
        "patients": contrasts["n_patients"].astype(int),
    }).reset_index(drop=True)


def frontier(effects: pd.DataFrame, cohort: str, N: int, K: int = 1) -> pd.DataFrame:
    """DP rows at pool ``N`` sorted by epsilon (the privacy-utility frontier)."""
    rows = pick(effects, state="dp", cohort=cohort, N=N, K=K)
    return rows.sort_values("epsilon")


def utility_row(util: pd.DataFrame, metric: str, state: str, features: str = "projected") -> pd.Series:
    rows = util[(util["metric"] == metric) & (util["state"] == state) & (util["features"] == features)]
    if len(rows) != 1:
        raise LookupError(f"expected one utility row for {metric}/{state}/{features}, found {len(rows)}")
    return rows.iloc[0]


def utility_value(util: pd.DataFrame, metric: str, state: str, features: str = "projected") -> float:
    return float(utility_row(util, metric, state, features)["value"])


def utility_glue_values(util: pd.DataFrame) -> dict[str, float]:
    """The numbers the utility chapter glues (percent or percentage points)."""
    v = lambda m, s, f="projected": 100 * utility_value(util, m, s, f)  # noqa: E731
    probe = "linear_probe_macro_auroc"
    return {
        "probe_before": v(probe, "before"),
        "probe_after": v(probe, "dp"),
        "probe_change": v(probe, "dp") - v(probe, "before"),
        "probe_trunk": v(probe, "before", "trunk"),
        "probe_n_labels": int(utility_row(util, probe, "before")["n_labels"]),
        "zeroshot_before": v("zero_shot_macro_auroc", "before"),
        "zeroshot_after": v("zero_shot_macro_auroc", "dp"),
        "gap_before": v("member_gap", "before"),
        "gap_after": v("member_gap", "dp"),
    }


def utility_table(util: pd.DataFrame) -> pd.DataFrame:
    """Each utility (rows: metric, features) per state (columns ``before``, ``dp``, ...), in percent
    (percentage points for the member gap)."""
    out = (100 * util.pivot_table(index=["metric", "features"], columns="state", values="value", sort=False)).round(2)
    out.columns.name = None
    return out.reset_index()


SWEEP_COLUMNS = ("setting", "epsilon", "rdp_epsilon", "noise_multiplier", "steps", "n_units", "privacy_unit")


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The privacy record of each run of the sweep, the columns a reader compares."""
    return sweep[[c for c in SWEEP_COLUMNS if c in sweep.columns]].reset_index(drop=True)


def lift_low(row: pd.Series) -> float:
    """Lower interval bound of a row's lift over chance."""
    return float(row["ci_low"] / row["chance"])


def chance_verdict(row: pd.Series) -> str:
    """A phrase saying whether a recall row is above chance beyond its interval."""
    return "still above chance" if lift_low(row) > 1 else "not distinguishable from chance at this scale"


def hard_negative_verdict(row: pd.Series) -> str:
    """A sentence on whether re-linkage survives pathology-matched distractors."""
    if lift_low(row) > 1:
        return ("The signal is not just shared pathology: it survives distractors that a "
                "label-level attacker could not tell apart.")
    return ("On this profile the matched pools bring re-linkage within the interval of chance: "
            "the signal cannot be told apart from shared pathology here.")
