"""The book's figures, drawn from tidy tables.

Figures are built with :class:`matplotlib.figure.Figure` (not pyplot) so a
notebook shows each exactly once, where it returns it, and ``glue`` can store
it for other pages.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..labels import CHEXPERT_LABELS
from . import summaries as S
from .display import value

STATE_COLORS = {"positive": "#c0392b", "uncertain": "#e67e22", "negative": "#2980b9", "missing": "#bdc3c7"}


def _axes(width: float = 6.4, height: float = 4.0, ncols: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def prevalence(table: pd.DataFrame) -> Figure:
    """Stacked bars of label states per cohort (rows: cohort x label, fractions)."""
    cohorts = list(table["cohort"].unique())
    fig, axes = _axes(4.2 * len(cohorts), 4.6, len(cohorts))
    axes = np.atleast_1d(axes)
    for ax, cohort in zip(axes, cohorts):
        rows = table[table["cohort"] == cohort].set_index("label").reindex(list(CHEXPERT_LABELS))
        left = np.zeros(len(rows))
        for state, color in STATE_COLORS.items():
            ax.barh(rows.index, rows[state], left=left, color=color, label=state)
            left += rows[state].to_numpy()
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(cohort)
        ax.set_xlabel("fraction of pairs")
    axes[0].legend(loc="lower right", fontsize="small")
    for ax in axes[1:]:
        ax.set_yticklabels([])
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


def _recall_lines(ax, table: pd.DataFrame, cohort: str, K: int, lift: bool) -> None:
    for model in S.ladder_order(table):
        rows = S.pick(table, model=model, cohort=cohort, K=K)
        rows = rows[rows["pool"] != "full"].sort_values("N")
        scale = rows["chance"].to_numpy() if lift else 1.0
        ax.plot(rows["N"], rows["value"] / scale, marker="o", label=model)
        ax.fill_between(rows["N"], rows["ci_low"] / scale, rows["ci_high"] / scale, alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidate pool size N")
    ax.grid(True, which="both", alpha=0.3)


def recall_vs_pool(table: pd.DataFrame, cohort: str, K: int = 1) -> Figure:
    """Recall@K against N per rung, with intervals and the chance line."""
    fig, ax = _axes()
    _recall_lines(ax, table, cohort, K, lift=False)
    rows = S.pick(table, cohort=cohort, K=K)
    Ns = np.sort(rows.loc[rows["pool"] != "full", "N"].unique())
    ax.plot(Ns, np.minimum(K, Ns) / Ns, "k--", label="chance")
    ax.set_ylabel(f"Recall@{K} (image to report)")
    ax.set_title(cohort)
    ax.legend(fontsize="small")
    return fig


def lift_vs_pool(table: pd.DataFrame, cohort: str, K: int = 1) -> Figure:
    fig, ax = _axes()
    _recall_lines(ax, table, cohort, K, lift=True)
    ax.axhline(1, color="k", ls="--", label="chance")
    ax.set_ylabel(f"lift of Recall@{K} over chance")
    ax.set_title(cohort)
    ax.legend(fontsize="small")
    return fig


def hard_negatives(table: pd.DataFrame, model: str, cohort: str, K: int = 1) -> Figure:
    """Lift against N for random and matched distractors (one model); marker size = coverage."""
    fig, ax = _axes()
    for negatives in table["negatives"].unique():
        rows = S.pick(table, model=model, cohort=cohort, K=K, negatives=negatives)
        rows = rows[(rows["pool"] != "full") & (rows["coverage"] > 0)].sort_values("N")
        chance = rows["chance"].to_numpy()
        ax.plot(rows["N"], rows["value"] / chance, label=negatives.replace("_", " "))
        ax.scatter(rows["N"], rows["value"] / chance, s=10 + 60 * rows["coverage"])
        ax.fill_between(rows["N"], rows["ci_low"] / chance, rows["ci_high"] / chance, alpha=0.2)
    ax.axhline(1, color="k", ls="--", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidate pool size N (marker size: coverage)")
    ax.set_ylabel(f"lift of Recall@{K} over chance")
    ax.set_title(f"{model}, {cohort}")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def frontier(effects: pd.DataFrame, K: int = 1) -> Figure:
    """Recall@K against epsilon per cohort, at the largest pool each cohort fills; the model
    before mitigation and the non-private retraining as reference lines."""
    fig, ax = _axes()
    for i, cohort in enumerate(effects["cohort"].unique()):
        color = f"C{i}"
        N = S.largest_finite_pool(effects, cohort=cohort)
        rows = S.frontier(effects, cohort, N, K)
        ax.errorbar(rows["epsilon"], rows["value"], yerr=[rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]],
                    marker="o", color=color, capsize=3, label=f"{cohort} (N = {N:,}): DP")
        for state, ls in (("before", ":"), ("non_private", "--")):
            ref = S.pick(effects, state=state, cohort=cohort, N=N, K=K)
            if len(ref):
                ax.axhline(float(ref["value"].iloc[0]), color=color, ls=ls, label=f"{cohort}: {state.replace('_', '-')}")
    ax.set_xscale("log")
    budgets = sorted(effects.loc[effects["state"] == "dp", "epsilon"].dropna().unique())
    ax.set_xticks(budgets, [f"{e:g}" for e in budgets])  # the budgets run, not log-scale minor labels
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("privacy budget ε")
    ax.set_ylabel(f"Recall@{K}")
    ax.legend(fontsize="x-small")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def utility(util: pd.DataFrame) -> Figure:
    """Grouped bars: each utility metric before / after DP (/ non-private)."""
    rows = util[util["features"] == "projected"]
    metrics = list(rows["metric"].unique())
    states = list(rows["state"].unique())
    fig, ax = _axes(7.0, 3.8)
    width = 0.8 / len(states)
    for j, state in enumerate(states):
        vals = [float(rows[(rows["metric"] == m) & (rows["state"] == state)]["value"].sum()) for m in metrics]
        ax.bar(np.arange(len(metrics)) + j * width, np.asarray(vals) * 100, width, label=value(state))
    ax.set_xticks(np.arange(len(metrics)) + width * (len(states) - 1) / 2)
    names = [textwrap.fill(re.sub(r" \((%|points)\)$", "", value(m)), 16) for m in metrics]
    ax.set_xticklabels(names, fontsize="small")
    ax.set_ylabel("percent (AUROC) or points (gap)")
    ax.legend(fontsize="small")
    return fig
