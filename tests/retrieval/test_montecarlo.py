"""Monte Carlo pools (literal sampling) agree with the exact estimator within Monte Carlo error."""

import numpy as np
import pytest

from helpers.brute import rank_counts
from relink.retrieval.exact import expected_recall
from relink.retrieval.montecarlo import monte_carlo_recall
from helpers.brute import unit


def _data(seed=0, n=120, d=8):
    rng = np.random.default_rng(seed)
    image = unit(rng, n, d)
    text = 0.5 * image + unit(rng, n, d)
    text[rng.integers(0, n, 10)] = text[3]  # ties
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    patient = rng.integers(0, 40, n)
    groups = rng.integers(0, 3, n)
    return image, text, patient, groups


@pytest.mark.parametrize("direction, level, grouped", [
    ("image_to_report", "study", False), ("report_to_image", "patient", False),
    ("image_to_report", "patient", True), ("report_to_image", "study", True)])
def test_monte_carlo_agrees_with_exact(direction, level, grouped):
    image, text, patient, groups = _data()
    draws, ks, n_pools = [4, 19], [1, 3], 400
    g = groups if grouped else None
    mc = monte_carlo_recall(image, text, patient, draws, ks, n_pools, direction, level, g, random_state=1)
    rc = rank_counts(image, text, patient, [("pathology_matched", groups)] if grouped else [],
                     directions=(direction,), levels=(level,))[(direction, level, "pathology_matched" if grouped else "random")]
    for j, n_draw in enumerate(draws):
        exact = expected_recall(rc.above, rc.tied, rc.available, n_draw, ks)
        np.testing.assert_array_equal(np.isnan(mc[:, j, 0]), np.isnan(exact[:, 0]))  # same queries can fill the pool
        kept = ~np.isnan(exact[:, 0])
        for i, _ in enumerate(ks):
            p = exact[kept, i]
            # mean over queries of per-query means of n_pools Bernoulli draws
            se = np.sqrt((p * (1 - p)).sum() / n_pools) / kept.sum()
            assert abs(mc[kept, j, i].mean() - p.mean()) <= 4 * se + 1e-9


def test_same_seed_same_pools_and_seed_matters():
    image, text, patient, _ = _data(2, n=60)
    a = monte_carlo_recall(image, text, patient, [9], [1], 50, random_state=7)
    b = monte_carlo_recall(image, text, patient, [9], [1], 50, random_state=7)
    c = monte_carlo_recall(image, text, patient, [9], [1], 50, random_state=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
