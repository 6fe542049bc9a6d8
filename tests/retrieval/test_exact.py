"""The exact estimator: hypergeometric maths against scipy and against enumeration of every pool."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.stats import hypergeom

from helpers.brute import rank_counts
from relink.retrieval.exact import (TIES, chance_rank, chance_recall, expected_rank, expected_recall,
                                    hypergeom_cdf, reciprocal_rank)
from helpers.brute import enumerate_recall, hit_probability, unit


@settings(max_examples=40, deadline=None)
@given(pop=st.integers(1, 400), data=st.data())
def test_hypergeom_cdf_matches_scipy(pop, data):
    draws = data.draw(st.integers(0, pop))
    c = np.array(data.draw(st.lists(st.integers(0, pop), min_size=1, max_size=5)))
    kmax = data.draw(st.integers(1, 12))
    ours = hypergeom_cdf(pop, c, draws, kmax)
    theirs = hypergeom.cdf(np.arange(kmax)[None, :], pop, c[:, None], draws)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


@pytest.mark.parametrize("pop, draws, kmax", [(3064, 999, 200), (3064, 999, 300), (20000, 9999, 400)])
def test_hypergeom_cdf_holds_for_large_k(pop, draws, kmax):
    # pmf(0) far below the smallest float while pmf(K-1) is not: a product of ratios overflowed to NaN here
    c = np.unique(np.linspace(0, pop, 151).astype(int))
    ours = hypergeom_cdf(pop, c, draws, kmax)
    assert not np.isnan(ours).any()
    np.testing.assert_allclose(ours, hypergeom.cdf(np.arange(kmax)[None, :], pop, c[:, None], draws), atol=1e-9)
    filled = expected_recall(c, np.zeros_like(c), np.full(len(c), pop), draws, [kmax])
    assert not np.isnan(filled).any()  # every query can fill the pool, so none may be left out


def _tiny(seed, n=7, d=3, duplicates=True):
    rng = np.random.default_rng(seed)
    image, text = unit(rng, n, d), unit(rng, n, d)
    text = 0.6 * image + text
    if duplicates:
        text[[1, 4]] = text[0]  # ties with the truth of pairs 0, 1, 4
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    patient = np.array([0, 0, 1, 2, 2, 2, 3][:n])
    groups = np.array([0, 1, 0, 0, 1, 0, 0][:n])
    return image, text, patient, groups


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("level", ["study", "patient"])
@pytest.mark.parametrize("direction", ["image_to_report", "report_to_image"])
def test_exact_equals_enumeration_over_all_pools(direction, level, ties):
    for seed in range(3):
        image, text, patient, groups = _tiny(seed)
        for grouped in (False, True):
            grp = [("pathology_matched", groups)] if grouped else []
            rc = rank_counts(image, text, patient, grp, directions=(direction,), levels=(level,))
            rc = rc[(direction, level, "pathology_matched" if grouped else "random")]
            for n_pool in (1, 2, 3, 4):
                draws = n_pool - 1
                for k in range(1, n_pool + 1):
                    exact = expected_recall(rc.above, rc.tied, rc.available, draws, [k], ties)[:, 0]
                    brute = enumerate_recall(image, text, patient, n_pool, k, direction, level,
                                             groups if grouped else None, ties)
                    np.testing.assert_allclose(exact, brute, atol=1e-12, err_msg=f"N={n_pool} K={k} grouped={grouped}")


def test_full_pool_is_certain_hit_or_miss():
    above = np.array([0, 2, 5, 0])
    tied = np.array([0, 0, 0, 3])
    got = expected_recall(above, tied, np.full(4, 10), None, [1, 3], "random")
    np.testing.assert_allclose(got[:, 0], [1, 0, 0, 1 / 4])
    np.testing.assert_allclose(got[:, 1], [1, 1, 0, 3 / 4])


def test_unfillable_pools_are_nan():
    got = expected_recall(np.array([0, 0]), np.array([0, 0]), np.array([5, 50]), 9, [1])
    assert np.isnan(got[0, 0]) and got[1, 0] == pytest.approx(1.0)


counts = st.integers(0, 60).flatmap(lambda avail: st.tuples(
    st.just(avail), st.integers(0, avail).flatmap(lambda c: st.tuples(st.just(c), st.integers(0, avail - c)))))


@settings(max_examples=60, deadline=None)
@given(case=counts, n_pool=st.integers(2, 30))
def test_recall_rises_with_k_falls_with_n_and_orders_tie_policies(case, n_pool):
    avail, (c, t) = case
    if n_pool - 1 > avail:
        return
    a, b, av = np.array([c]), np.array([t]), np.array([avail])
    ks = list(range(1, n_pool + 1))
    r = {p: expected_recall(a, b, av, n_pool - 1, ks, p)[0] for p in TIES}
    assert np.all(np.diff(r["random"]) >= -1e-12)
    assert r["pessimistic"][0] - 1e-12 <= r["random"][0] <= r["optimistic"][0] + 1e-12
    if n_pool <= avail:
        bigger = expected_recall(a, b, av, n_pool, [1], "random")[0, 0]
        assert bigger <= r["random"][0] + 1e-12


def test_chance_recall_matches_random_orderings():
    for m, d, k in [(1, 9, 1), (1, 9, 5), (3, 6, 1), (3, 6, 4), (2, 0, 1), (4, 5, 7)]:
        total = m + d
        hits = [any(p < k for p in pos) for pos in itertools.combinations(range(total), m)]
        assert chance_recall([m], d, [k])[0, 0] == pytest.approx(np.mean(hits), abs=1e-12)
    assert chance_recall(np.ones(3, int), 99, [1, 5, 10])[0] == pytest.approx([0.01, 0.05, 0.10], abs=1e-15)


def test_reciprocal_and_expected_rank_average_over_tie_orders():
    for c, t in [(0, 0), (3, 0), (2, 4), (0, 7)]:
        ranks = np.arange(c + 1, c + t + 2)  # the truth's place among its ties is uniform
        assert reciprocal_rank(np.array([c]), np.array([t]))[0] == pytest.approx(np.mean(1 / ranks))
        assert expected_rank(np.array([c]), np.array([t]))[0] == pytest.approx(np.mean(ranks))
        assert reciprocal_rank(np.array([c]), np.array([t]), "pessimistic")[0] == pytest.approx(1 / (c + t + 1))
        assert expected_rank(np.array([c]), np.array([t]), "optimistic")[0] == c + 1


def test_chance_rank_matches_enumeration():
    for m, d in [(1, 5), (2, 4), (3, 3)]:
        best = [min(pos) + 1 for pos in itertools.combinations(range(m + d), m)]
        rr, rank = chance_rank(np.array([m]), np.array([d]))
        assert rr[0] == pytest.approx(np.mean(1 / np.array(best)))
        assert rank[0] == pytest.approx(np.mean(best))


def test_hit_probability_reference_is_sane():
    assert hit_probability(0, 0, 1) == 1 and hit_probability(1, 0, 1) == 0
    assert hit_probability(0, 1, 1) == 0.5 and hit_probability(0, 3, 2) == 0.5
    assert math.isclose(hit_probability(1, 2, 3, "random"), 2 / 3)
