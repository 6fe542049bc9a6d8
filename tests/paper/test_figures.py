"""The book's figures draw what their tables hold: one line per rung, chance where it belongs, the
frontier's budgets on its axis, intervals around the values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink.labels import CHEXPERT_LABELS
from relink.paper import figures


def audit_table(rungs=(1, 2, 3), pools=(10, 100, 1000), n=5000) -> pd.DataFrame:
    rows = []
    for rung in rungs:
        for N in (*pools, n):
            chance = 1 / N
            value = min(1.0, chance * (1 + 3 * rung))
            rows.append({"rung": rung, "role": "internal", "pool": "full" if N == n else str(N), "model": f"rung-{rung}",
                         "cohort": "internal", "direction": "image_to_report", "negatives": "random", "level": "study",
                         "N": N, "K": 1, "estimator": "exact", "metric": "recall", "value": value,
                         "ci_low": 0.8 * value, "ci_high": 1.2 * value, "chance": chance, "lift": value / chance,
                         "n_queries": n, "coverage": 1.0})
    return pd.DataFrame(rows)


def test_recall_and_lift_against_the_pool_draw_every_rung_and_chance():
    table = audit_table()
    fig = figures.recall_vs_pool(table, cohort="internal")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"rung-1", "rung-2", "rung-3", "chance"} <= set(lines)
    # in percent, as the axis says
    np.testing.assert_allclose(lines["chance"].get_ydata(), [100 / 10, 100 / 100, 100 / 1000])
    np.testing.assert_allclose(lines["rung-2"].get_xdata(), [10, 100, 1000])  # the full pool is not a point
    np.testing.assert_allclose(lines["rung-2"].get_ydata(), [700 / 10, 700 / 100, 700 / 1000])
    assert "(%)" in ax.get_ylabel() and "N" in ax.get_xlabel()
    lift = figures.lift_vs_pool(table, cohort="internal").axes[0]
    np.testing.assert_allclose({x.get_label(): x for x in lift.get_lines()}["rung-3"].get_ydata(), [10, 10, 10])


def test_frontier_puts_the_budgets_run_on_its_axis_and_the_references_as_lines():
    rows = []
    for state, eps, value in (("before", np.nan, 0.02), ("dp", 0.34, 0.01), ("dp", 8.0, 0.015), ("non_private", np.nan, 0.018)):
        rows.append({"state": state, "epsilon": eps, "cohort": "internal", "pool": "1000", "N": 1000, "K": 1,
                     "direction": "image_to_report", "negatives": "random", "level": "study", "estimator": "exact",
                     "metric": "recall", "value": value, "ci_low": value * 0.9, "ci_high": value * 1.1,
                     "chance": 0.001, "lift": value / 0.001, "rung": 3, "role": "internal", "model": "m"})
    ax = figures.frontier(pd.DataFrame(rows)).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.34", "8"]
    refs = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("internal:")}
    assert refs == pytest.approx({"internal: before": 2.0, "internal: non-private": 1.8})  # percent


def test_prevalence_stacks_each_labels_states_to_one():
    rows = [{"cohort": "c", "label": label, "positive": 0.2, "uncertain": 0.1, "negative": 0.3, "missing": 0.4}
            for label in CHEXPERT_LABELS]
    ax = figures.prevalence(pd.DataFrame(rows)).axes[0]
    right = max(p.get_x() + p.get_width() for p in ax.patches)
    assert right == pytest.approx(100.0) and len(ax.patches) == 4 * len(CHEXPERT_LABELS)


def test_utility_bars_show_each_metric_in_each_state_in_percent():
    util = pd.DataFrame([{"state": s, "features": "projected", "metric": m, "value": v}
                         for s, m, v in (("before", "linear_probe_macro_auroc", 0.7), ("dp", "linear_probe_macro_auroc", 0.69),
                                         ("before", "zero_shot_macro_auroc", 0.55), ("dp", "zero_shot_macro_auroc", 0.52))])
    ax = figures.utility(util).axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [52.0, 55.0, 69.0, 70.0]


def test_utility_puts_each_quantity_on_its_own_axis():
    """AUROC (%) and Recall@1 (%) and the member gap (points) never share an axis: a Recall@1 of a few
    percent drawn beside an AUROC of 70% is an invisible bar."""
    util = pd.DataFrame([{"state": s, "features": "projected", "metric": m, "value": v}
                         for s in ("before", "dp")
                         for m, v in (("linear_probe_macro_auroc", 0.7), ("recall_members", 0.03),
                                      ("recall_non_members", 0.02), ("member_gap", 0.01))])
    fig = figures.utility(util)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["macro AUROC (%)", "Recall@1 (%)", "member gap (percentage points)"]
    auroc, recall, gap = fig.axes
    assert sorted(round(p.get_height(), 6) for p in recall.patches) == [2.0, 2.0, 3.0, 3.0]
    assert len(auroc.patches) == 2 and len(gap.patches) == 2


def _rgba(c):
    from matplotlib.colors import to_rgba

    return tuple(round(x, 4) for x in to_rgba(c)[:3])


def test_hard_negative_markers_and_bands_take_their_lines_colour():
    """Each kind of distractor has one colour for its line, its markers and its band (the legend's
    colour): matplotlib's separate line and patch colour cycles drifted apart before."""
    table = pd.concat([audit_table(rungs=(1,)).assign(negatives=n) for n in ("random", "pathology_matched")])
    fig = figures.hard_negatives(table, model="rung-1", cohort="internal")
    ax = fig.axes[0]
    lines = [l for l in ax.get_lines() if l.get_label() in ("random", "pathology matched")]
    from matplotlib.collections import PathCollection, PolyCollection

    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(lines) == len(dots) == len(bands) == 2
    for line, dot, band in zip(lines, dots, bands):
        assert _rgba(line.get_color()) == _rgba(dot.get_facecolor()[0]) == _rgba(band.get_facecolor()[0])
    legend = fig.legends[0]
    shown = {t.get_text(): _rgba(h.get_color()) for t, h in zip(legend.get_texts(), legend.legend_handles)
             if t.get_text() in ("random", "pathology matched")}
    assert shown == {l.get_label(): _rgba(l.get_color()) for l in lines}


def test_legends_sit_outside_the_axes():
    """No legend inside a plotting area, where it can cover bars or lines."""
    rows = [{"cohort": "c", "label": label, "positive": 0.2, "uncertain": 0.1, "negative": 0.3, "missing": 0.4}
            for label in CHEXPERT_LABELS]
    for fig in (figures.prevalence(pd.DataFrame(rows)), figures.recall_vs_pool(audit_table(), cohort="internal")):
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        box = fig.legends[0].get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer))
