"""The book's figures, drawn from tidy tables, as :class:`matplotlib.figure.Figure` (not pyplot): a notebook
shows each exactly once, where it returns it, and ``glue`` can store it for other pages."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..labels import CHEXPERT_LABELS
from . import summaries as S
from .display import value

STATE_COLORS = {"positive": "#c0392b", "uncertain": "#e67e22", "negative": "#2980b9", "missing": "#bdc3c7"}
#: one colour per kind of distractor, the same in a chapter's lines, markers and bands
NEGATIVE_COLORS = {"random": "C0", "pathology_matched": "C1", "positive_set_matched": "C2", "paired_random": "C3"}
NEGATIVE_MARKERS = {"random": "o", "pathology_matched": "s", "positive_set_matched": "^", "paired_random": "v"}


def _axes(width: float = 6.4, height: float = 4.0, ncols: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _legend_below(fig: Figure, ax, ncols: int = 3) -> None:
    """The legend under the axes, outside them, so it never covers a mark."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, max(1, len(labels))), fontsize="small",
               frameon=False)


def prevalence(table: pd.DataFrame) -> Figure:
    """Stacked bars of label states per cohort (rows: cohort x label, fractions), in % of pairs."""
    cohorts = list(table["cohort"].unique())
    fig, axes = _axes(4.2 * len(cohorts), 4.9, len(cohorts))
    axes = np.atleast_1d(axes)
    for ax, cohort in zip(axes, cohorts):
        rows = table[table["cohort"] == cohort].set_index("label").reindex(list(CHEXPERT_LABELS))
        left = np.zeros(len(rows))
        for state, color in STATE_COLORS.items():
            share = 100 * rows[state].to_numpy()
            ax.barh(rows.index, share, left=left, color=color, label=state)
            left += share
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(cohort)
        ax.set_xlabel("share of the cohort's pairs (%)")
    for ax in axes[1:]:
        ax.set_yticklabels([])
    _legend_below(fig, axes[0], ncols=4)
    return fig


def example_pairs(examples: list[dict[str, Any]], root: Path, width: int = 60) -> Figure:
    """Images beside their reports (synthetic cohorts only; see the privacy rule)."""
    from PIL import Image

    n = len(examples)
    fig = Figure(figsize=(9, 2.3 * n), layout="constrained")
    axes = fig.subplots(n, 2, width_ratios=[1, 3], squeeze=False)
    for (ax_img, ax_txt), ex in zip(axes, examples):
        with Image.open(Path(root) / ex["image"]) as im:
            ax_img.imshow(np.asarray(im.convert("L")), cmap="gray")
        ax_img.set_axis_off()
        ax_img.set_title(ex["cohort"], fontsize="small")
        wrapped = "\n".join(textwrap.fill(p, width) for p in ex["report"].split("\n"))
        ax_txt.text(0, 1, wrapped, va="top", ha="left", family="monospace", fontsize=7.5)
        ax_txt.set_axis_off()
    return fig


def _band(ax, x, value, low, high, color, label, **kw) -> None:
    """A line with markers and its interval band, all in one explicit colour (matplotlib's line and
    patch colour cycles advance separately, so implicit colours drift apart)."""
    ax.plot(x, value, marker="o", color=color, label=label, **kw)
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def _plain_log_axes(ax) -> None:
    """Log axes labelled with plain numbers at 1-2-5 steps (0.5, 1, 2, 1,000), not 10^3 or 5 x 10^-1."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _recall_figure(table: pd.DataFrame, cohort: str, K: int, lift: bool) -> Figure:
    """Recall@K (%), or its lift over chance, against N per rung, with intervals and the chance line."""
    fig, ax = _axes(6.4, 4.4)
    for i, model in enumerate(S.ladder_order(table)):
        rows = S.pick(table, model=model, cohort=cohort, K=K)
        rows = rows[rows["pool"] != "full"].sort_values("N")
        scale = rows["chance"].to_numpy() if lift else 0.01  # lift: times chance; recall: percent
        _band(ax, rows["N"], rows["value"] / scale, rows["ci_low"] / scale, rows["ci_high"] / scale, f"C{i}", model)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidate pool size N (reports)")
    ax.grid(True, which="both", alpha=0.3)
    if lift:
        ax.axhline(1, color="k", ls="--", label="chance")
        ax.set_ylabel(f"lift of Recall@{K} over chance (×)")
    else:
        rows = S.pick(table, cohort=cohort, K=K)
        Ns = np.sort(rows.loc[rows["pool"] != "full", "N"].unique())
        ax.plot(Ns, 100 * np.minimum(K, Ns) / Ns, "k--", label="chance")
        ax.set_ylabel(f"Recall@{K}, image → report (%)")
    ax.set_title(cohort)
    _plain_log_axes(ax)
    _legend_below(fig, ax, ncols=4)
    return fig


def recall_vs_pool(table: pd.DataFrame, cohort: str, K: int = 1) -> Figure:
    return _recall_figure(table, cohort, K, lift=False)


def lift_vs_pool(table: pd.DataFrame, cohort: str, K: int = 1) -> Figure:
    return _recall_figure(table, cohort, K, lift=True)


def hard_negatives(table: pd.DataFrame, model: str, cohort: str, K: int = 1) -> Figure:
    """Lift against N for random and matched distractors (one model); marker area = coverage."""
    from matplotlib.lines import Line2D

    fig, ax = _axes(6.4, 4.6)
    for i, negatives in enumerate(table["negatives"].unique()):
        color = NEGATIVE_COLORS.get(negatives, f"C{4 + i}")
        rows = S.pick(table, model=model, cohort=cohort, K=K, negatives=negatives)
        rows = rows[(rows["pool"] != "full") & (rows["coverage"] > 0)].sort_values("N")
        if rows.empty:  # no pool this kind could fill: no mark, so no legend entry either
            continue
        chance = rows["chance"].to_numpy()
        x, y = rows["N"], rows["value"] / chance
        shape = NEGATIVE_MARKERS.get(negatives, "D")  # a shape too: kinds with equal values stay visible
        ax.plot(x, y, color=color, marker=shape, markersize=0, label=negatives.replace("_", " "))
        ax.scatter(x, y, s=10 + 60 * rows["coverage"], color=color, marker=shape, alpha=0.85, zorder=3)
        ax.fill_between(x, rows["ci_low"] / chance, rows["ci_high"] / chance, color=color, alpha=0.2, linewidth=0)
    ax.axhline(1, color="k", ls="--", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidate pool size N (reports)")
    ax.set_ylabel(f"lift of Recall@{K} over chance (×)")
    ax.set_title(f"{model}, {cohort}")
    ax.grid(True, which="both", alpha=0.3)
    _plain_log_axes(ax)
    handles, labels = ax.get_legend_handles_labels()
    handles = [Line2D([], [], color=h.get_color(), marker=h.get_marker(), markersize=6) if h.get_marker() not in
               (None, "None", "") else h for h in handles]
    for share in (1.0, 0.5):  # what a marker's size means
        handles.append(Line2D([], [], ls="", marker="o", color="0.5", markersize=np.sqrt(10 + 60 * share)))
        labels.append(f"coverage {share:.0%}")
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    return fig


def frontier(effects: pd.DataFrame, K: int = 1) -> Figure:
    """Recall@K (%) against epsilon per cohort at its largest pool, with the states before and non-private."""
    fig, ax = _axes(6.4, 4.8)
    for i, cohort in enumerate(effects["cohort"].unique()):
        color = f"C{i}"
        N = S.largest_finite_pool(effects, cohort=cohort)
        rows = S.frontier(effects, cohort, N, K)
        v = 100 * rows["value"]
        ax.errorbar(rows["epsilon"], v, yerr=[v - 100 * rows["ci_low"], 100 * rows["ci_high"] - v],
                    marker="o", color=color, capsize=3, label=f"{cohort} (N = {N:,}): DP")
        for state, ls in (("before", ":"), ("non_private", "--")):
            ref = S.pick(effects, state=state, cohort=cohort, N=N, K=K)
            if len(ref):
                ax.axhline(100 * float(ref["value"].iloc[0]), color=color, ls=ls,
                           label=f"{cohort}: {state.replace('_', '-')}")
    ax.set_xscale("log")
    budgets = sorted(effects.loc[effects["state"] == "dp", "epsilon"].dropna().unique())
    ax.set_xticks(budgets, [f"{e:g}" for e in budgets])  # the budgets run, not log-scale minor labels
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("privacy budget ε (per run)")
    ax.set_ylabel(f"Recall@{K}, image → report (%)")
    ax.grid(True, which="both", alpha=0.3)
    _legend_below(fig, ax, ncols=2)
    return fig


def _quantity(metric: str) -> str:
    """The axis a utility metric belongs on: one quantity, one unit, per panel."""
    if "auroc" in metric:
        return "macro AUROC (%)"
    if "gap" in metric:
        return "member gap (percentage points)"
    return "Recall@1 (%)"


def utility(util: pd.DataFrame) -> Figure:
    """Grouped bars of each utility metric per state: one panel per quantity, so a small value is never drawn
    beside a large one of another kind."""
    rows = util[util["features"] == "projected"]
    metrics = list(rows["metric"].unique())
    states = list(rows["state"].unique())
    panels: dict[str, list[str]] = {}
    for m in metrics:
        panels.setdefault(_quantity(m), []).append(m)
    fig = Figure(figsize=(3.2 + 2.4 * len(metrics), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), width_ratios=[len(g) for g in panels.values()]))
    width = 0.8 / len(states)
    for ax, (quantity, group) in zip(axes, panels.items()):
        for j, state in enumerate(states):
            vals = [float(rows[(rows["metric"] == m) & (rows["state"] == state)]["value"].sum()) for m in group]
            ax.bar(np.arange(len(group)) + j * width, np.asarray(vals) * 100, width, color=f"C{j}", label=value(state))
        ax.set_xticks(np.arange(len(group)) + width * (len(states) - 1) / 2)
        names = [textwrap.fill(re.sub(r" \((%|points)\)$", "", value(m)), 16) for m in group]
        ax.set_xticklabels(names, fontsize="small")
        ax.set_ylabel(quantity)
        if "gap" in quantity:
            ax.axhline(0, color="k", lw=0.8)
    _legend_below(fig, axes[0], ncols=len(states))
    return fig


def attacker_curves(curves: pd.DataFrame, order: list[str], targets: tuple[float, ...] = (0.9, 0.99)) -> Figure:
    """The threshold attacker's precision against its recall (both %) per rung at one pool N: solid before
    mitigation, dashed the DP heads, dash-dotted heads re-trained on public pairs; dotted the targets."""
    from .beyond import STATES, curve_points

    fig, ax = _axes(6.4, 4.6)
    for i, model in enumerate(order):
        for state, style in (("before", "-"), ("dp", "--"), ("retrained", "-.")):
            pts = curve_points(curves, model, state)
            if pts.empty:
                continue
            label = model if state == "before" else f"{model}, {STATES[state]}"
            ax.plot(pts["recall"], pts["precision"], style, color=f"C{i}", label=label, drawstyle="steps-post")
    for j, target in enumerate(targets):
        ax.axhline(100 * target, color="k", ls=":", lw=0.9 + 0.4 * j, label=f"precision {100 * target:g}%")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("images re-linked correctly (% of the held-out images, symmetric log scale)")
    ax.set_ylabel("precision of the attacker's links (%)")
    ax.set_ylim(0, 101)
    ax.grid(True, which="both", alpha=0.3)
    _legend_below(fig, ax, ncols=3)
    return fig


def confident_bars(confident: pd.DataFrame, metric: str = "relinked_best") -> Figure:
    """Images re-linked (%) at each precision target, with 95% intervals, per rung and state."""
    targets = sorted(confident["precision_target"].dropna().astype(float).unique())
    rows = confident[confident["metric"] == metric].sort_values(["rung", "state"])
    groups = [(int(r), s) for r, s in rows[["rung", "state"]].drop_duplicates().itertuples(index=False)]
    groups.sort(key=lambda g: (g[0], list(("before", "dp", "retrained")).index(g[1])))
    from .beyond import STATES

    names = {(int(r["rung"]), r["state"]): str(r["model"]) + ("" if r["state"] == "before"
                                                               else f", {STATES[r['state']]}")
             for _, r in rows.iterrows()}
    fig, ax = _axes(6.4, 4.4)
    width = 0.8 / max(1, len(targets))
    x = np.arange(len(groups))
    for j, target in enumerate(targets):
        sel = [rows[(rows["rung"] == g[0]) & (rows["state"] == g[1])
                    & np.isclose(rows["precision_target"].astype(float), target)].iloc[0] for g in groups]
        val = np.array([100 * float(r["value"]) for r in sel])
        low = np.array([100 * float(r["ci_low"]) for r in sel])
        high = np.array([100 * float(r["ci_high"]) for r in sel])
        err = np.vstack([np.clip(val - low, 0, None), np.clip(high - val, 0, None)])
        ax.bar(x + j * width, val, width, yerr=np.nan_to_num(err), capsize=3, color=f"C{j}",
               label=f"precision ≥ {100 * target:g}%")
    ax.set_xticks(x + width * (len(targets) - 1) / 2)
    ax.set_xticklabels([textwrap.fill(names[g], 16) for g in groups], fontsize="small")
    ax.set_ylabel("images re-linked (% of the held-out images)")
    _legend_below(fig, ax, ncols=len(targets))
    return fig
