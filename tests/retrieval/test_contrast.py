"""Paired contrasts: the point value against plain means, the interval against a hand-written patient bootstrap
(a different method that must agree where both are sound) and a hand-written clustered variance, and its coverage
of no change when both sides are exchangeable, rare hits included."""

import numpy as np
import pytest

from relink.retrieval.contrast import paired_contrast


def _hand_bootstrap(a, b, patients, n_boot, seed, kind):
    """A per-replicate loop over patients, written independently of relink's weighted sums."""
    rng = np.random.default_rng(seed)
    ids = np.unique(patients)
    rows_of = {p: np.flatnonzero(patients == p) for p in ids}
    out = []
    for _ in range(n_boot):
        pick = np.concatenate([rows_of[p] for p in rng.choice(ids, size=len(ids), replace=True)])
        ma, mb = a[pick].mean(), b[pick].mean()
        out.append(mb - ma if kind == "difference" else mb / ma - 1.0)
    return np.percentile(out, [2.5, 97.5])


@pytest.mark.parametrize("kind", ["difference", "relative"])
def test_value_and_interval_match_a_hand_bootstrap(kind):
    rng = np.random.default_rng(3)
    patients = rng.integers(0, 150, size=600)
    a = rng.random(600)
    b = np.clip(a - 0.1 + 0.05 * rng.standard_normal(600), 0, 1)
    got = paired_contrast(a, b, patients, kind, n_boot=2000, random_state=1)
    expect = b.mean() - a.mean() if kind == "difference" else b.mean() / a.mean() - 1
    assert got.value == pytest.approx(expect)
    lo, hi = _hand_bootstrap(a, b, patients, 2000, 7, kind)
    width = hi - lo
    # a different method (and random stream): with 150 patients and no rare events they agree closely
    assert abs(got.ci_low - lo) < 0.15 * width and abs(got.ci_high - hi) < 0.15 * width
    assert got.excludes_zero
    if kind == "difference":  # the leave-one-patient-out jackknife written out patient by patient
        d, ids = b - a, np.unique(patients)
        leave = np.array([d[patients != p].mean() for p in ids])
        se = np.sqrt((len(ids) - 1) / len(ids) * ((leave - leave.mean()) ** 2).sum())
        from scipy.stats import t
        half = t.ppf(0.975, len(ids) - 1) * se
        assert got.ci_low == pytest.approx(d.mean() - half) and got.ci_high == pytest.approx(d.mean() + half)


def test_rows_missing_on_either_side_are_left_out_of_both():
    a = np.array([0.5, np.nan, 0.2, 0.4])
    b = np.array([0.4, 0.3, np.nan, 0.2])
    got = paired_contrast(a, b, np.array([1, 2, 3, 4]), "difference", n_boot=0)
    assert got.n_queries == 2 and got.value == pytest.approx(0.3 - 0.45)


def test_one_patient_has_no_interval():
    got = paired_contrast([0.2, 0.4], [0.1, 0.1], [7, 7], "relative", n_boot=200)
    assert np.isnan(got.ci_low) and np.isnan(got.ci_high) and not got.excludes_zero


def test_exchangeable_sides_cover_no_change():
    """Null simulation: both sides draw from one distribution per query; the 95% interval should hold 0."""
    covered = 0
    seeds = 200
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        patients = rng.integers(0, 100, size=300)
        base = rng.random(300) * 0.2
        a = rng.binomial(1, base).astype(float)
        b = rng.binomial(1, base).astype(float)
        c = paired_contrast(a, b, patients, "difference", n_boot=400, random_state=seed)
        covered += c.ci_low <= 0 <= c.ci_high
    assert covered / seeds >= 0.92


@pytest.mark.parametrize("kind, rate", [("difference", 0.2), ("ratio", 0.2), ("ratio", 0.03), ("difference", 0.03)])
def test_null_coverage_with_clustered_and_rare_hits(kind, rate):
    """Both sides are exchangeable draws per query (patients share a latent rate, so hits cluster); the 95%
    interval of the contrast must hold no change in >= 93% of 400 seeds and miss on each side in <= 3.5%."""
    seeds, covered, above, below = 1000, 0, 0, 0
    null = 1.0 if kind == "ratio" else 0.0
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 5])
        size = rng.integers(1, 5, 100)
        patients = np.repeat(np.arange(100), size)
        p = np.repeat(rng.beta(2, 2 / rate - 2, 100), size)  # mean ``rate``, varying by patient
        a = rng.binomial(1, p).astype(float)
        b = rng.binomial(1, p).astype(float)
        c = paired_contrast(a, b, patients, kind, n_boot=1)
        if not np.isfinite(c.ci_low):
            covered += 1  # not computable (a side without a hit): no claim made
            continue
        covered += c.ci_low <= null <= c.ci_high
        above += c.ci_low > null
        below += c.ci_high < null
    assert covered / seeds >= 0.93 and above / seeds <= 0.035 and below / seeds <= 0.035


def test_a_ratio_against_a_zero_mean_is_not_computable_not_infinite():
    a = np.zeros(40)
    b = np.r_[np.ones(5), np.zeros(35)]
    patients = np.repeat(np.arange(20), 2)
    for kind in ("ratio", "relative"):
        c = paired_contrast(a, b, patients, kind=kind)
        assert np.isnan(c.value) and np.isnan(c.ci_low) and np.isnan(c.ci_high)
    d = paired_contrast(a, b, patients, kind="difference")
    assert d.value == pytest.approx(5 / 40)
