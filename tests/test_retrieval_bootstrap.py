"""Patient-clustered bootstrap: resamples patients, not pairs."""

import numpy as np
import pytest

from relink.retrieval.audit import audit_arrays
from relink.retrieval.bootstrap import bootstrap_means, bootstrap_medians, replicate_weights, weighted_median
from test_retrieval_brute import unit


def test_replicate_weights_are_multinomial_counts_and_seeded():
    w = np.vstack(list(replicate_weights(50, 230, random_state=3)))
    assert w.shape == (230, 50)
    assert np.all(w.sum(axis=1) == 50) and np.all(w >= 0)
    assert abs(w.mean() - 1.0) < 0.02 and abs(w.var() - (1 - 1 / 50)) < 0.1  # multinomial(50, 1/50) moments
    np.testing.assert_array_equal(w, np.vstack(list(replicate_weights(50, 230, random_state=3))))


def test_one_big_perfect_patient_widens_the_interval():
    # patient 0 has 60 queries that always hit; 60 other patients have one query each that never does
    values = np.r_[np.ones(60), np.zeros(60)][:, None]
    clusters = np.r_[np.zeros(60, int), np.arange(1, 61)]
    lo_c, hi_c = bootstrap_means(values, clusters, 2000, random_state=0)
    lo_p, hi_p = bootstrap_means(values, np.arange(120), 2000, random_state=0)
    assert lo_c[0] <= 0.5 <= hi_c[0] and lo_p[0] <= 0.5 <= hi_p[0]
    assert (hi_c - lo_c)[0] > 3 * (hi_p - lo_p)[0]


def test_nan_queries_are_left_out_of_each_column():
    values = np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0], [0.0, np.nan]])
    lo, hi = bootstrap_means(values, np.arange(4), 300, random_state=0)
    assert lo[1] == hi[1] == 1.0  # only the two present values, both 1
    assert 0 <= lo[0] < hi[0] <= 1


def test_weighted_median_matches_numpy_for_unit_weights():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 8):
        v = np.sort(rng.integers(0, 10, n).astype(float))
        assert weighted_median(v, np.ones((1, n)))[0] == np.median(v)
    v = np.array([1.0, 2.0, 3.0])
    assert weighted_median(v, np.array([[0, 0, 5.0]]))[0] == 3.0


def test_median_interval_brackets_the_median():
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 100, 300).astype(float)
    lo, hi = bootstrap_medians(ranks, np.arange(300) // 3, 500, random_state=0)
    assert lo[0] <= np.median(ranks) <= hi[0] and hi[0] - lo[0] < 40


def test_audit_intervals_resample_patients():
    rng = np.random.default_rng(5)
    n = 160
    image, text = unit(rng, n, 16), unit(rng, n, 16)
    text[:60] = image[:60]  # 60 perfectly linked pairs ...
    patient = np.r_[np.zeros(60, int), np.arange(1, n - 59)]  # ... all from one patient
    kw = dict(pools=(10,), ks=(1,), levels=("study",), directions=("image_to_report",), n_boot=500)
    by_patient = audit_arrays(image, text, patient, **kw)
    by_pair = audit_arrays(image, text, np.arange(n), **kw)
    width = lambda f: float((f.ci_high - f.ci_low)[f.metric == "recall"].iloc[0])  # noqa: E731
    assert by_patient.value.iloc[0] == pytest.approx(by_pair.value.iloc[0])
    assert width(by_patient) > 2 * width(by_pair)


def test_band_medians_equal_full_weighted_medians():
    from relink.retrieval.bootstrap import _band_medians

    rng = np.random.default_rng(2)
    for n, n_clusters in [(1000, 300), (50, 5), (7, 7), (400, 2)]:
        values = np.sort(rng.integers(1, 60, n).astype(float))
        clusters = rng.integers(0, n_clusters, n)
        _, codes = np.unique(clusters, return_inverse=True)
        k = codes.max() + 1
        w = np.vstack(list(replicate_weights(k, 300, random_state=1)))
        np.testing.assert_array_equal(_band_medians(values, codes, k, w), weighted_median(values, w[:, codes]))
