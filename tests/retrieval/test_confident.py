"""The threshold attacker (confident re-links) against literal random pools and against its definitions.

References here are written from the definitions (relink.retrieval.confident's docstring), not from its
code: literal pools drawn at random and scored from the whole score matrix; the exact best threshold
searched over every truth score.
"""

import numpy as np
import pytest

from relink.retrieval.audit import audit_arrays, audit_queries, summarise
from relink.retrieval.confident import best_point
from relink.retrieval.spec import AuditSpec
from relink.retrieval.summary import confident_curve
from relink.embeddings import EmbeddingSet
from helpers.brute import link_values, p_none, unit

import pandas as pd


def _aligned(seed, n, d, noise, per_patient=2):
    rng = np.random.default_rng(seed)
    image = unit(rng, n, d)
    text = image + noise * rng.normal(size=(n, d)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return image, text, np.arange(n) // per_patient


def _qv(image, text, patient, **spec):
    rows = pd.DataFrame({"pair_id": np.arange(len(patient)).astype(str), "patient_id": patient.astype(str)})
    es = EmbeddingSet.from_arrays(rows, image, text)
    return audit_queries(es, AuditSpec(**spec))


def _monte_carlo(S, patient, thresholds, N, level, pools, rng):
    """Expected correct and total links at each threshold over literal pools (image_to_report)."""
    n = len(S)
    correct = np.zeros(len(thresholds))
    links = np.zeros(len(thresholds))
    for i in range(n):
        own = patient == patient[i]
        truths = np.flatnonzero(own) if level == "patient" else np.array([i])
        others = np.flatnonzero(~own) if level == "patient" else np.flatnonzero(np.arange(n) != i)
        best_truth = S[i, truths].max()
        if N is None:
            top_distractor = np.array([S[i, others].max()])
        else:  # pools of N - 1 distinct distractors: the first N - 1 of random permutations
            pick = np.argsort(rng.random((pools, len(others))), axis=1)[:, : N - 1]
            top_distractor = S[i, others[pick]].max(axis=1)
        top = np.maximum(best_truth, top_distractor)[:, None]
        hit = (best_truth >= top_distractor)[:, None]  # continuous scores: no ties
        correct += ((top >= thresholds) & hit).mean(0)
        links += (top >= thresholds).mean(0)
    return correct, links


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", ["study", "patient"])
def test_expected_links_match_literal_pools(seed, level):
    image, text, patient = _aligned(seed, 120, 8, 0.9)
    qv = _qv(image, text, patient, pools=(10, 100, "full"), ks=(1,), directions=("image_to_report",),
             levels=(level,), confident=(0.9,), n_boot=0)
    curve = confident_curve(qv)
    S = (image.astype(np.float64) @ text.astype(np.float64).T)
    rng = np.random.default_rng(100 + seed)
    pools = 400
    for N in (10, 100, 120):
        c = curve[(curve.N == N) & (curve.level == level)]
        exact = c[c.links_exact]
        mc_c, mc_l = _monte_carlo(S, patient, exact.threshold.to_numpy(), None if N == 120 else N, level, pools, rng)
        # Monte Carlo error of a sum of n independent per-query means of `pools` Bernoulli draws: at most
        # sqrt(n / (4 pools)); five of them
        tol = 5 * np.sqrt(len(S) / (4 * pools)) + 1e-9
        np.testing.assert_allclose(exact.expected_correct, mc_c, atol=tol, err_msg=f"correct N={N}")
        np.testing.assert_allclose(exact.expected_links, mc_l, atol=tol, err_msg=f"links N={N}")
        # below the counted thresholds the links are an upper bound
        low = c[~c.links_exact]
        if len(low):
            mc_c, mc_l = _monte_carlo(S, patient, low.threshold.to_numpy(), None if N == 120 else N, level, pools, rng)
            np.testing.assert_allclose(low.expected_correct, mc_c, atol=tol)
            assert (low.expected_links.to_numpy() >= mc_l - tol).all()


def test_p_none_is_the_hypergeometric_zero():
    from scipy.stats import hypergeom

    d = np.array([0, 1, 5, 40, 95])
    D = np.full(5, 99)
    np.testing.assert_allclose(p_none(d, D, 9), hypergeom(99, d, 9).pmf(0), rtol=1e-10)
    np.testing.assert_array_equal(p_none(d, D, None), [1, 0, 0, 0, 0])
    assert np.isnan(p_none(np.array([0]), np.array([5]), 9)[0])


def test_random_embeddings_stay_at_chance():
    rng = np.random.default_rng(7)
    n = 1500
    image, text = unit(rng, n, 32), unit(rng, n, 32)
    patient = np.arange(n) // 3
    qv = _qv(image, text, patient, pools=(10, 100, "full"), ks=(1,), confident=(0.9, 0.5))
    curve = confident_curve(qv)
    exact = curve[curve.links_exact & (curve.expected_links > 50)]  # enough links to speak of a precision
    study = exact[exact.level == "study"]
    # a random scorer's precision is 1/N at every threshold
    tol = 0.05 + 3.0 / np.sqrt(study.expected_links.to_numpy())
    assert (np.abs(study.precision.to_numpy() - 1.0 / study.N.to_numpy()) < tol).all(), study
    table = summarise(qv)
    rows = table[table.metric.str.startswith("relinked")]
    assert len(rows) == 2 * 2 * 3 * 2 * 2
    assert (rows.chance == 0).all() and rows.lift.isna().all()
    # no image re-linked at precision 0.9 beyond its interval: the interval holds 0
    at90 = rows[rows.precision_target == 0.9]
    assert (at90.ci_low <= 1e-12).all(), at90
    assert (at90.value <= at90.ci_high).all()


def test_strongly_aligned_set_relinks_most_images_confidently():
    image, text, patient = _aligned(3, 800, 32, 0.08)
    table = audit_arrays(image, text, patient, pools=(10, 100, "full"), ks=(1,), confident=(0.9,),
                         confident_calibration=200)
    rows = table[(table.metric == "relinked_best") & (table.level == "study")]
    assert (rows.value > 0.8).all(), rows
    cal = table[(table.metric == "relinked_calibrated") & (table.level == "study")]
    assert (cal.value > 0.7).all() and (cal.n_queries < 800).all()


def _exact_best(S, target, N):
    """The best threshold attacker over every truth score, from the whole score matrix (study level)."""
    n = len(S)
    truth = np.diag(S).copy()
    off = S.copy()
    np.fill_diagonal(off, -np.inf)
    c = (off > truth[:, None] + 1e-6).sum(1)
    draws = None if N == n else N - 1
    r1 = p_none(c, np.full(n, n - 1), draws)
    best = 0.0
    for t in np.unique(truth):
        d = (off >= t).sum(1)
        links = np.where(truth >= t, 1.0, 1.0 - p_none(d, np.full(n, n - 1), draws)).sum()
        C = (np.where(truth >= t, r1, 0.0)).sum()
        if C >= target * links:
            best = max(best, C / n)
    return best


@pytest.mark.parametrize("noise", [0.8, 1.2])
def test_the_grid_changes_the_figure_by_less_than_half_its_interval(noise):
    image, text, patient = _aligned(11, 1000, 24, noise, per_patient=1)
    S = (image @ text.T).astype(np.float32)
    np.fill_diagonal(S, np.einsum("ij,ij->i", image, text))
    table = audit_arrays(image, text, patient, pools=(10, 100, "full"), ks=(1,), levels=("study",),
                         directions=("image_to_report",), confident=(0.9,))
    rows = table[table.metric == "relinked_best"]
    for _, row in rows.iterrows():
        exact = _exact_best(S.astype(np.float64), 0.9, int(row.N))
        half = (row.ci_high - row.ci_low) / 2
        assert row.value <= exact + 1e-9  # the points restrict the attacker: a lower bound
        assert exact - row.value < half, (row.N, exact, row.value, half)
        assert row.ci_high >= exact - 1e-9  # and the interval reaches the exact figure


def test_best_point_picks_the_most_correct_links_at_the_target():
    C = np.array([90.0, 80.0, 50.0, 10.0])
    L = np.array([200.0, 88.0, 52.0, 10.0])
    assert best_point(C, L, 0.9) == 1
    assert best_point(C, L, 0.99) == 3
    assert best_point(C * 0, L, 0.9) is None


def test_confident_rows_leave_the_other_rows_unchanged():
    image, text, patient = _aligned(5, 300, 16, 1.0)
    plain = audit_arrays(image, text, patient, pools=(10, "full"), ks=(1, 5))
    both = audit_arrays(image, text, patient, pools=(10, "full"), ks=(1, 5), confident=(0.9,))
    assert "precision_target" not in plain.columns
    kept = both[~both.metric.str.startswith("relinked")].drop(columns="precision_target").reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, plain)
    assert both.loc[~both.metric.str.startswith("relinked"), "precision_target"].isna().all()


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_counts_at_or_above_equal_brute_force_whatever_the_blocks(engine):
    import torch

    from relink.retrieval.engine.counts import stream_counts
    from relink.retrieval.scale import Scale
    from relink.embeddings import RowSource
    from relink.retrieval.engine.rows import WorkRows

    image, text, patient = _aligned(4, 300, 8, 1.0)
    xs = WorkRows(RowSource(image, normalise=False), np.arange(300), torch.device("cpu"))
    ys = WorkRows(RowSource(text, normalise=False), np.arange(300), torch.device("cpu"))
    whole = stream_counts(xs, ys, patient, scale=Scale(engine=engine), confident=(16, 0.05))
    tiled = stream_counts(xs, ys, patient, scale=Scale(engine=engine, tiles=(7, 24)), confident=(16, 0.05))
    cc = whole.confident
    S = image.astype(np.float64) @ text.astype(np.float64).T
    # the pair's own cell is its truth score as the audit computes it (one float32 dot product)
    np.fill_diagonal(S, torch.einsum("ij,ij->i", torch.from_numpy(image), torch.from_numpy(text)).numpy())
    # thresholds are truth scores, some of them off-diagonal cells (a patient's best report): a cell within
    # rounding of a threshold may fall on either side, so those (row, threshold) entries are not compared
    near = np.abs(S[:, :, None] - cc.counted) < 1e-5
    want = {"image_to_report": ((S[:, :, None] >= cc.counted).sum(1), near.any(1)),
            "report_to_image": ((S[:, :, None] >= cc.counted).sum(0), near.any(0))}
    for direction, (counts, unsure) in want.items():
        assert unsure.mean() < 0.01
        for got in (cc.at_or_above[direction], tiled.confident.at_or_above[direction]):
            np.testing.assert_array_equal(got[~unsure], counts[~unsure])
    assert cc.counted[0] >= np.quantile(S[~np.eye(300, dtype=bool)], 0.9)  # only the top cells are binned


def test_null_coverage_of_confident_rows():
    """Random embeddings, many seeds: no threshold truly re-links at precision >= the target (a random
    scorer's precision is 1/N), so the figure's truth is 0 and its interval must hold 0 in at least 95% of
    rows, the best-threshold attacker's search over the points included."""
    held, total = 0, 0
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        n = 240
        image, text = unit(rng, n, 16), unit(rng, n, 16)
        table = audit_arrays(image, text, np.arange(n) // 2, pools=(10, 100, "full"), ks=(1,),
                             confident=(0.5, 0.9), confident_calibration=60, random_state=seed)
        rows = table[table.metric.str.startswith("relinked")]
        held += int((rows.ci_low <= 0).sum())
        total += len(rows)
    assert held / total >= 0.95, held / total


def test_confident_counts_resume_from_the_work_folder(tmp_path, monkeypatch):
    from relink.retrieval import memory
    from relink.retrieval.scale import Scale

    monkeypatch.setattr(memory, "resident", lambda: None)  # plan from the estimates: several slabs
    image, text, patient = _aligned(6, 4000, 512, 1.0)
    rows = pd.DataFrame({"pair_id": np.arange(4000).astype(str), "patient_id": patient.astype(str)})
    es = EmbeddingSet.from_arrays(rows, image, text)
    spec = AuditSpec(pools=(10, "full"), ks=(1,), confident=(0.9,))
    whole = audit_queries(es, spec)
    work = tmp_path / "a.work"
    first = audit_queries(es, spec, scale=Scale(memory=32 << 20, work=work))
    again = audit_queries(es, spec, scale=Scale(memory=32 << 20, work=work))  # every slab read back
    assert first.run["slabs"] > 1 and again.run["finished_before"] == first.run["slabs"]
    for qv in (first, again):
        pd.testing.assert_frame_equal(confident_curve(qv), confident_curve(whole))
        pd.testing.assert_frame_equal(summarise(qv), summarise(whole))


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_binning_in_runs_of_rows_counts_every_cell_once(engine, monkeypatch):
    """Every cell clears the lowest point here (the worst case for memory): binned a few rows at a time, the
    counts equal a histogram of each row and column taken directly."""
    import torch

    from relink.retrieval.engine import backends as tileops

    rng = np.random.default_rng(3)
    h, w, G = 37, 29, 6
    S = rng.uniform(0.0, 1.0, size=(h, w + 3)).astype(np.float32)  # 3 pad columns, never binned
    grid = np.sort(rng.uniform(0.0, 0.5, size=G)).astype(np.float32)
    grid[0] = 0.0
    edges = np.concatenate([grid, [np.inf]])
    want_rows = np.stack([np.histogram(S[i, :w], edges)[0] for i in range(h)])
    want_cols = np.stack([np.histogram(S[:, j], edges)[0] for j in range(w)])
    seen = []
    real = tileops._chunks
    monkeypatch.setattr(tileops, "BIN_CELLS", 1)  # runs of at most w cells: one row each
    monkeypatch.setattr(tileops, "_chunks", lambda per_row, cap: seen.append(cap) or real(per_row, cap))
    ops = tileops.backend(torch.device("cpu"), engine, h)
    rows, cols = ops.zeros((h, G), ops.int32), ops.zeros((w, G), ops.int32)
    ops.bin(ops.host(torch.as_tensor(S)), w, ops.grid(grid), rows, cols)
    assert seen == [w]
    np.testing.assert_array_equal(ops.to_numpy(rows), want_rows)
    np.testing.assert_array_equal(ops.to_numpy(cols), want_cols)


def test_runs_of_rows_hold_at_most_the_cap():
    from relink.retrieval.engine.backends import _chunks

    per_row = np.random.default_rng(0).integers(0, 50, size=500)
    runs = _chunks(per_row, 120)
    assert runs[0][0] == 0 and runs[-1][1] == 500 and all(b == c for (_, b), (c, _) in zip(runs, runs[1:]))
    assert max(per_row[a:b].sum() for a, b in runs) <= 120
    # as few runs as a greedy split allows: each run and the next row would exceed the cap
    assert all(per_row[a:b + 1].sum() > 120 for a, b in runs[:-1])


def test_a_tight_budget_thins_the_grid_and_keeps_a_lower_bound(monkeypatch):
    """Where the binned scores of the whole grid do not fit the budget, the pass bins on every other point
    (recorded as the grid used); the curve lies on points of the full grid's and the figure stays a lower
    bound of the full grid's (fewer thresholds for the attacker to choose from)."""
    from relink.retrieval import memory
    from relink.retrieval.scale import Scale

    monkeypatch.setattr(memory, "resident", lambda: None)  # plan from the estimates
    image, text, patient = _aligned(6, 4000, 512, 1.0)
    rows = pd.DataFrame({"pair_id": np.arange(4000).astype(str), "patient_id": patient.astype(str)})
    es = EmbeddingSet.from_arrays(rows, image, text)
    spec = AuditSpec(pools=(10, "full"), ks=(1,), confident=(0.9,))
    whole = audit_queries(es, spec)
    thin = audit_queries(es, spec, scale=Scale(memory=28 << 20))
    assert "confident_grid" not in (whole.run or {}) or whole.run["confident_grid"] == whole.run["confident_grid_asked"]
    assert thin.run["confident_grid"] < thin.run["confident_grid_asked"]
    used = thin.confident["counts"].counted
    assert len(used) == thin.run["confident_grid"]
    assert set(used.tolist()) <= set(whole.confident["counts"].counted.tolist())
    assert set(confident_curve(thin).threshold) <= set(confident_curve(whole).threshold)
    a, b = summarise(thin), summarise(whole)
    pick = (a.metric == "relinked_best")
    assert pick.any()
    assert (a.loc[pick, "value"].to_numpy() <= b.loc[b.metric == "relinked_best", "value"].to_numpy() + 1e-12).all()


def _literal_pool_sums(truth, r1, at, above, available, draws, counted, low, masks):
    """The sums as they were first written: every query's (correct, links) tables (link_values), summed."""
    parts = link_values(truth, r1, at, at[:, 0], above, available, draws, counted, low)
    ok = ~np.isnan(r1)
    out = []
    for m in masks:
        w = (ok & m).astype(np.float64)
        C, L, L_low = (np.nansum(np.where(ok[:, None], p, 0.0) * w[:, None], axis=0) for p in parts)
        L_low = np.concatenate([L_low, L[len(low):]])
        out.append((C, L, L_low, int(w.sum())))
    return out


@pytest.mark.parametrize("draws", [9, 99, 2996, None])
def test_pool_sums_equal_the_per_query_tables(draws):
    """The suffix sums over queries ordered by truth and the tables of P(none) by population give the sums of
    the literal per-query tables, at every point, for every mask (several populations, NaN recall rows)."""
    from relink.retrieval.confident import _pool_sums

    rng = np.random.default_rng(3)
    n = 3000
    truth = rng.normal(size=n).astype(np.float32)
    counted = np.sort(rng.normal(1.0, 0.5, 12)).astype(np.float32)
    low = np.sort(rng.normal(-1.0, 0.5, 6)).astype(np.float32)
    at = np.sort(rng.integers(0, 200, size=(n, 12)), axis=1)[:, ::-1].astype(np.int32)
    above = rng.integers(0, 1500, size=n)
    available = n - rng.integers(1, 6, size=n)
    available[:40] = 5  # a population too small for the pool: no recall there
    r1 = rng.random(n)
    if draws is not None:
        r1[available < draws] = np.nan  # as expected_recall gives it: the pool cannot be filled
    cal = rng.random(n) < 0.2
    masks = [np.ones(n, bool), cal, ~cal]
    fast = _pool_sums(truth, r1, at, above, available, draws, counted, low, masks)
    slow = _literal_pool_sums(truth, r1, at, above, available, draws, counted, low, masks)
    for f, s in zip(fast, slow):
        for a, b in zip(f[:3], s[:3]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
        assert f[3] == s[3]


def test_the_summary_s_recall_column_is_the_attacker_s_correct_link():
    """The summary hands its Recall@1 columns to the threshold attacker instead of recomputing them: the rows
    and the curve equal those computed from the counts alone."""
    from relink.retrieval.confident import confident_tables
    from relink.retrieval.bootstrap import _cluster_codes

    image, text, patient = _aligned(21, 500, 16, 0.8)
    qv = _qv(image, text, patient, pools=(10, 100, "full"), ks=(1, 5), confident=(0.5, 0.9))
    table = summarise(qv)
    conf = qv.confident
    codes, g = _cluster_codes(qv.patient)
    rows, curve = confident_tables(conf, slice(None), qv.patient, codes, g, conf["pools"], len(qv), qv.spec)
    mine = table[table.metric.isin(["relinked_best", "relinked_calibrated"])].reset_index(drop=True)
    ref = pd.DataFrame(rows).sort_values(["direction", "level", "metric", "N", "precision_target"]).reset_index(drop=True)
    mine = mine.sort_values(["direction", "level", "metric", "N", "precision_target"]).reset_index(drop=True)
    for col in ("value", "ci_low", "ci_high", "n_queries"):
        np.testing.assert_array_equal(mine[col].to_numpy(), ref[col].to_numpy())
    pd.testing.assert_frame_equal(confident_curve(qv), curve)
