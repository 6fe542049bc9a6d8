"""The page's figures, drawn from the report record (exactly the JSON's numbers) as inline SVG text.

Text stays text (``svg.fonttype = none``) and element ids are salted deterministically, so the same record draws
the same SVG. Margins are set by hand: a layout engine or a tight bounding box draws the figure again, which
tripled the page's drawing time.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

INK, CHANCE, ACCENT, MUTED = "#1f2933", "#9aa5b1", "#b42318", "#52606d"
RC = {"svg.fonttype": "none", "svg.hashsalt": "relink-report", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "axes.edgecolor": MUTED, "axes.labelcolor": INK, "xtick.color": MUTED,
      "ytick.color": MUTED}


def _plain_log(axis) -> None:
    """A log axis labelled 1, 10, 100 without minor ticks: mathtext labels (10^2) cost most of a figure's time."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG needs neither


def _figure(width: float, height: float, left: float = 0.8, bottom: float = 0.75, top: float = 0.45,
            right: float = 0.15, wspace: float = 0.25):
    """A figure with margins given in inches (labels need the same room whatever the figure's size)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace)
    return fig


def rank_histogram(hist: dict[str, Any]) -> str:
    """Queries per rank bin beside chance, one panel per direction."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(7.2, 2.9, left=0.6, bottom=1.05, top=0.55)
        axes = fig.subplots(1, len(hist), squeeze=False)[0]
        for ax, (direction, h) in zip(axes, hist.items()):
            bins = h["bins"]
            x = np.arange(len(bins))
            ax.bar(x, [b["queries"] for b in bins], color=INK, width=0.7, label="audited queries")
            ax.scatter(x, [b["chance"] for b in bins], marker="_", s=300, color=ACCENT, zorder=3, label="guessing")
            if min(min(b["queries"] for b in bins), min(b["chance"] for b in bins)) > 0:
                ax.set_yscale("log")  # an empty bin (a small audit) cannot sit on a log axis: linear then
                _plain_log(ax.yaxis)
            ax.set_xticks(x, [b["ranks"] for b in bins], rotation=30, ha="right")
            ax.set_title(direction.replace("_", " "), fontsize=9, color=INK)
            ax.set_xlabel("rank of the true match among all audited candidates")
        axes[0].set_ylabel("queries")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncols=2, frameon=False, fontsize=8)
        return _svg(fig)


def group_lifts(concentration: dict[str, Any], pool: int, thresholds: dict[str, float]) -> str | None:
    """A forest plot: Recall@1 lift (image to report, the first declared pool) per group, with intervals."""
    import matplotlib

    items = []
    for section, title in (("label_groups", "labels"), ("views", "view"), ("studies_per_patient", "studies/patient")):
        for g in concentration.get(section, {}).get("groups", []):
            row = next((r for r in g["rows"] if r["direction"] == "image_to_report" and r["N"] == pool), None)
            if row is not None and math.isfinite(row["lift"]):
                items.append((f"{title}: {g['group']}", row["lift"], row["lift_ci"]))
    if not items:
        return None
    with matplotlib.rc_context(RC):
        longest = max(len(i[0]) for i in items)
        fig = _figure(7.2, 0.26 * len(items) + 1.2, left=min(3.6, 0.07 * longest + 0.2), bottom=0.55, top=0.45)
        ax = fig.subplots()
        y = np.arange(len(items))[::-1]
        lifts = np.array([i[1] for i in items])
        lo = np.array([i[2][0] for i in items])
        hi = np.array([i[2][1] for i in items])
        err = np.vstack([np.clip(lifts - lo, 0, None), np.clip(hi - lifts, 0, None)])
        err = np.where(np.isfinite(err), err, 0)
        ax.errorbar(lifts, y, xerr=err, fmt="o", color=INK, ms=4, capsize=2, lw=1)
        ax.axvline(1, color=CHANCE, lw=1, ls="--", label="chance (1)")
        for key, name, style in (("lift_elevated", "elevated", ":"), ("lift_high", "high", "-.")):
            ax.axvline(thresholds[key], color=ACCENT, lw=0.9, ls=style, label=f"{name} threshold ({thresholds[key]:g})")
        ax.set_yticks(y, [i[0] for i in items])
        top = np.nanmax(np.concatenate([hi[np.isfinite(hi)], lifts[np.isfinite(lifts)], [thresholds["lift_high"]]]))
        if top > 30:  # lifts spanning decades above chance: a log axis keeps chance and the thresholds apart
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        fig.legend(*ax.get_legend_handles_labels(), loc="upper center", ncols=3, frameon=False, fontsize=8)
        ax.set_xlabel(f"Recall@1 lift over chance, image to report, N = {pool:,}")
        ax.set_ylim(-0.7, y.max() + 0.7)
        return _svg(fig)


def frontier(before: dict[str, Any], runs: list[dict[str, Any]], pool: int) -> str | None:
    """Recall@1 lift against epsilon for the mitigated runs, the unmitigated model as a line."""
    import matplotlib

    pts = []
    for run in runs:
        eps = run["privacy"].get("epsilon")
        row = next((r for r in run["risk"] if r["direction"] == "image_to_report" and r["level"] == "study"
                    and r["N"] == pool and r["K"] == 1), None)
        if isinstance(eps, (int, float)) and row is not None:
            pts.append((float(eps), row["lift"], row["lift_ci"]))
    if not pts:
        return None
    pts.sort()
    with matplotlib.rc_context(RC):
        fig = _figure(5.5, 2.8, left=0.7, bottom=0.55, top=0.2)
        ax = fig.subplots()
        e = np.array([p[0] for p in pts])
        lift = np.array([p[1] for p in pts])
        err = np.vstack([lift - np.array([p[2][0] for p in pts]), np.array([p[2][1] for p in pts]) - lift])
        ax.errorbar(e, lift, yerr=np.clip(np.nan_to_num(err), 0, None), fmt="o-", color=INK, ms=4, capsize=2, lw=1,
                    label="mitigated heads")
        ax.axhline(before["lift"], color=ACCENT, lw=1, ls="--", label="before mitigation")
        ax.axhline(1, color=CHANCE, lw=1, ls=":", label="chance")
        if len(e) > 1 and e.max() / e.min() > 5:
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        ax.set_xlabel("\u03b5 (each point is one run)")
        ax.set_ylabel(f"Recall@1 lift, N = {pool:,}")
        ax.legend(frameon=False, fontsize=8)
        return _svg(fig)


def risk_against_n(curve: list[dict[str, Any]], declared: list[int], released: int) -> str | None:
    """Expected images re-linked against the attacker's pool N (log axes), K = 1 and 10, both directions, with
    guessing and the declared pools marked."""
    import matplotlib

    if not curve:
        return None
    directions = [d for d in ("image_to_report", "report_to_image") if any(r["direction"] == d for r in curve)]
    with matplotlib.rc_context(RC):
        fig = _figure(7.2, 2.9, left=0.75, bottom=0.6, top=0.55)
        axes = fig.subplots(1, len(directions), squeeze=False, sharey=True)[0]
        for ax, direction in zip(axes, directions):
            for k, style in ((1, "-"), (10, "--")):
                pts = sorted((r["N"], r["expected_images"], *r["expected_images_ci"], r["chance_images"])
                             for r in curve if r["direction"] == direction and r["K"] == k)
                if not pts:
                    continue
                n, y, lo, hi, chance = (np.array(v, dtype=float) for v in zip(*pts))
                ax.plot(n, y, style, color=INK, lw=1.2, label=f"re-linked, K = {k}")
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(n[ok], lo[ok], hi[ok], color=INK, alpha=0.12, lw=0)
                ax.plot(n, chance, style, color=CHANCE, lw=1, label=f"guessing, K = {k}")
            for p in declared:
                ax.axvline(p, color=ACCENT, lw=1, ls=":")
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
            if all(r["expected_images"] > 0 and r["chance_images"] > 0 for r in curve):
                ax.set_yscale("log")
                _plain_log(ax.yaxis)
            ax.set_title(direction.replace("_", " "), fontsize=9, color=INK)
            ax.set_xlabel("attacker's pool N (dotted red: declared)")
        axes[0].set_ylabel(f"images re-linked of {released:,}")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncols=4, frameon=False, fontsize=8)
        return _svg(fig)
