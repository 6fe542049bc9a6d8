"""Every chance value the audit reports is what random embeddings give.

The independent reference is the simulation itself: image and report
embeddings drawn independently of each other (and of the labels), so that any
ranking is a random one. On such a set, every row of the audit (recall, MRR,
median rank; study and patient level; both directions; random and both kinds
of matched negatives; every pool and K; the paired random-negative columns)
must have an interval that contains its chance value, for all queries and for
subsets of them. The median-rank chance (the median of the pooled null,
:func:`relink.retrieval.exact.median_rank_chance`) is also checked against an
exact enumeration of the pooled null on tiny cases and against simulated
random orderings.

Intervals here are at the 99.9% level: the audit and its subset summaries
make about 660 checks here, and at 95% about one in twenty would miss chance
by design. A wrong chance value misses by many standard errors (the former
median-rank chance, the median of per-query mean ranks, by 5 to 8 on the
patient level here), which no level hides. The draw is seeded like every test; on
other draws the odd check (mostly patient-level rows of a subset) can land
just outside its 99.9% interval: the patient bootstrap holds the candidate
set fixed, and with random embeddings its intervals run slightly narrow.
A row needs enough expected hits for any interval to cover its mean: pools
and K are chosen so that every row of the full table has at least 25
(:func:`_informative`, asserted), and subset summaries check the rows that do.
"""

import itertools
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from relink.embeddings import EmbeddingSet
from relink.labels import CHEXPERT_LABELS
from relink.retrieval.audit import audit_queries, summarise
from relink.retrieval.exact import chance_rank, median_rank_chance
from relink.retrieval.spec import AuditSpec

CI = 0.999
NEGATIVES = ("random", "pathology_matched", "positive_set_matched")
# Label vectors of four pathology groups; the first two share their positive findings, so the positive-set
# grouping is coarser than the pathology grouping (three groups).
VECTORS = {0: {2: 1.0}, 1: {2: 1.0, 5: -1.0}, 2: {8: 1.0}, 3: {}}


def _random_set(n_patients=1200, seed=1, d=32):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_patients)  # 1-4 studies per patient
    patient = np.repeat(np.arange(n_patients), sizes)
    n = len(patient)
    group = rng.choice(len(VECTORS), size=n, p=[0.45, 0.25, 0.2, 0.1])
    rows = pd.DataFrame({"pair_id": [f"q{i}" for i in range(n)], "patient_id": [f"p{p}" for p in patient]})
    unlabelled = np.random.default_rng([seed, 1]).random(n) < 0.02  # no label at all: random pools only
    for j, name in enumerate(CHEXPERT_LABELS):
        rows[name] = np.where(unlabelled, np.nan, [VECTORS[g].get(j, 0.0) for g in group])
    # independent draws: no image is closer to its own report than to any other
    image, text = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    es = EmbeddingSet.from_arrays(rows, image.astype(np.float32), text.astype(np.float32))
    return es, sizes[np.unique(patient, return_inverse=True)[1]], group


@pytest.fixture(scope="module")
def audited():
    es, size, group = _random_set()
    # Small and large pools in two passes, with K chosen so that every row expects at least ~25 hits over
    # all queries: a mean of a handful of rare hits has no interval that can cover it (at N = 1000, K = 1
    # a random ranker expects 3 hits in 3,000 queries, and 0 hits would be an interval [0, 0]).
    small = AuditSpec(pools=(10, 30, 100), ks=(1, 3, 10), negatives=NEGATIVES, n_boot=1000, random_state=1, ci=CI)
    large = small.but(pools=(1000, "full"), ks=(50, 200))
    return es, size, group, {"small": audit_queries(es, small), "large": audit_queries(es, large)}


def _informative(frame):
    """Rows whose interval can be trusted: recall with at least 25 expected hits and misses (or a certain hit,
    K = N); MRR and median rank."""
    recall = frame.metric == "recall"
    expected = frame.n_queries * frame.chance
    certain = frame.chance >= 1 - 1e-12
    return frame[~recall | ((expected >= 25) & ((frame.n_queries - expected >= 25) | certain))]


def _assert_chance_inside(frame, what):
    assert len(frame)
    for _, row in frame.iterrows():
        label = f"{what}: {row.direction}/{row.level}/{row.negatives}/{row.metric} N={row.N} K={row.K}"
        slack = 1e-6 * row.chance  # the bootstrap sums in float32
        assert row.ci_low - slack <= row.chance <= row.ci_high + slack, label  # the lift interval contains 1
        # the point lift near 1: within the interval's own relative width of 1
        width = (row.ci_high - row.ci_low) / row.chance
        assert abs(row.lift - 1) <= width + 1e-6, label
        if not np.isnan(row.get("paired_random_value", np.nan)):
            paired_chance = row.paired_random_value / row.paired_random_lift
            slack = 1e-6 * paired_chance
            assert row.paired_random_ci_low - slack <= paired_chance <= row.paired_random_ci_high + slack, label


def test_every_row_of_the_audit_sits_at_chance_on_random_embeddings(audited):
    es, _, _, qv = audited
    small, large = summarise(qv["small"]), summarise(qv["large"])
    both = pd.concat([small, large], ignore_index=True)
    combos = both.groupby(["direction", "level", "negatives", "metric"]).size()
    assert len(combos) == 2 * 2 * (3 + 2)  # recall for three kinds of negatives, MRR and median rank for random
    assert set(both.N[both.metric == "recall"]) == {10, 30, 100, 1000, len(es)}
    assert set(both.K) == {0, 1, 3, 10, 50, 200}
    assert large.coverage.min() < 1  # the smaller label groups cannot fill a matched pool of 1000
    assert 0 < qv["small"].settings["unlabelled_rows"] < 0.05 * len(es)
    assert small[small.negatives != "random"].coverage.max() < 1 == small[small.negatives == "random"].coverage.min()
    assert len(_informative(both)) == len(both)  # every row is checked
    _assert_chance_inside(both, "all queries")


@pytest.mark.parametrize("subset", ["one or two studies", "four studies", "one label group", "half the patients"])
def test_summaries_of_subsets_sit_at_chance_too(audited, subset):
    es, size, group, qv = audited
    patient = es.rows["patient_id"].to_numpy()
    rows = {"one or two studies": size <= 2, "four studies": size == 4, "one label group": group == 0,
            "half the patients": np.isin(patient, np.unique(patient)[::2])}[subset]
    for values in qv.values():
        frame = summarise(values, rows=rows)
        checked = _informative(frame)
        assert len(checked) >= len(frame) / 2 and {"mrr", "median_rank"} <= set(checked.metric)
        _assert_chance_inside(checked, subset)


def test_the_old_median_rank_chance_fails_where_the_new_one_holds(audited):
    _, size, _, qv = audited
    qv = qv["small"]
    f = summarise(qv, rows=size == 4)
    mine = qv.set_rows(size == 4)
    for k, key in enumerate(qv.rank_keys):
        if key["level"] != "patient":
            continue
        row = f[(f.metric == "median_rank") & (f.level == "patient") & (f.direction == key["direction"])].iloc[0]
        m, d = qv.rank_null[k]
        old = float(np.median(chance_rank(m[mine], d[mine])[1]))  # median of per-query mean ranks
        assert row.chance == median_rank_chance(m[mine], d[mine])
        assert row.ci_low <= row.chance <= row.ci_high < old  # best-of-4 is skewed: its median is below its mean


def _pooled_median_by_enumeration(queries):
    """Median of the pooled null, exactly: every placement of each query's m truths among m + d, in fractions."""
    pmf: dict[int, Fraction] = {}
    for m, d in queries:
        places = list(itertools.combinations(range(m + d), m))
        for pos in places:
            r = min(pos) + 1
            pmf[r] = pmf.get(r, Fraction(0)) + Fraction(1, len(places) * len(queries))
    cum = Fraction(0)
    support = sorted(pmf)
    for i, r in enumerate(support):
        cum += pmf[r]
        if cum == Fraction(1, 2):
            return (r + support[i + 1]) / 2
        if cum > Fraction(1, 2):
            return float(r)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("queries", [
    [(1, 1)], [(1, 4)], [(2, 3)], [(4, 5)], [(3, 0)], [(1, 1), (1, 2)], [(2, 2), (1, 5)],
    [(1, 6), (2, 6), (3, 6), (4, 6)], [(4, 3), (4, 3), (1, 9)], [(2, 0), (1, 7), (3, 4), (1, 1)],
    [(1, 3)] * 5 + [(4, 8)] * 2, [(2, 9), (3, 7), (1, 10), (4, 6), (2, 2)]])
def test_median_rank_chance_equals_the_enumerated_pooled_null(queries):
    m, d = map(np.array, zip(*queries))
    assert median_rank_chance(m, d) == _pooled_median_by_enumeration(queries)


def test_median_rank_chance_matches_simulated_random_orderings():
    rng = np.random.default_rng(3)
    n, sets = 400, 600
    m, d = rng.integers(1, 5, n), rng.integers(150, 300, n)
    # a random order by independent uniform keys: the best truth has the smallest of m keys, and its rank is
    # one more than the number of distractors with a smaller key
    keys = np.where(np.arange(4)[None, None, :] < m[None, :, None], rng.random((sets, n, 4)), 2.0)
    ranks = 1 + rng.binomial(d[None, :], keys.min(axis=2))
    medians = np.median(ranks, axis=1)
    exact = median_rank_chance(m, d)
    assert abs(medians.mean() - exact) < max(1.0, 4 * medians.std() / np.sqrt(sets))
    assert abs(float(np.median(chance_rank(m, d)[1])) - exact) > 1.5 * medians.std()  # the mean-based value is off


@pytest.mark.parametrize("d", [1, 2, 9, 5999, 40_001, 399_999, 400_000])
def test_median_rank_chance_of_one_truth_is_the_middle_rank(d):
    # one truth among d + 1 in random order: uniform rank, median (d + 2) / 2 (a half rank when d + 1 is even),
    # which needs the pooled CDF to hit 1/2 to the last digits even for sets of 400,000 candidates
    assert median_rank_chance(np.ones(3, int), np.full(3, d)) == (d + 2) / 2
