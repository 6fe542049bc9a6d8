"""Patient-clustered bootstrap: resamples patients, not pairs."""

import numpy as np
import pytest

from relink.retrieval.audit import audit_arrays
from relink.retrieval.bootstrap import percentile_interval, replicate_weights, replicates
from helpers.brute import unit


def test_replicate_weights_are_multinomial_counts_and_seeded():
    w = np.vstack(list(replicate_weights(50, 230, random_state=3)))
    assert w.shape == (230, 50)
    assert np.all(w.sum(axis=1) == 50) and np.all(w >= 0)
    assert abs(w.mean() - 1.0) < 0.02 and abs(w.var() - (1 - 1 / 50)) < 0.1  # multinomial(50, 1/50) moments
    np.testing.assert_array_equal(w, np.vstack(list(replicate_weights(50, 230, random_state=3))))


def bootstrap_means(values, clusters, n_boot, random_state):
    return percentile_interval(replicates(values, clusters, n_boot, random_state))


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
