"""The audit table: what it says about random, perfect and structured embeddings, and what it refuses."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import comb
from scipy.stats import hypergeom

from relink.embeddings import EmbeddingSet, load, save
from relink.errors import RelinkError
from relink.labels import CHEXPERT_LABELS
from relink.retrieval.audit import PAIRED_COLUMNS, audit, audit_arrays, audit_queries, summarise
from relink.retrieval.spec import AuditSpec
from relink.tables import METRIC_COLUMNS
from helpers.brute import brute_counts, unit

FAST = dict(n_boot=200, random_state=0)


def _recall(frame, **where):
    sel = frame[(frame.metric == "recall") & (frame.estimator == "exact")]
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel


def test_table_shape_and_columns():
    rng = np.random.default_rng(0)
    f = audit_arrays(unit(rng, 150, 8), unit(rng, 150, 8), np.arange(150) // 2, pools=(10, 100, "full"), **FAST)
    assert tuple(f.columns) == METRIC_COLUMNS
    assert len(f) == 2 * 2 * (3 * 3 + 2)  # directions x levels x (pools x K + mrr + median_rank)
    assert set(f.N) == {10, 100, 150} and set(f.K) == {0, 1, 5, 10}
    assert (f[f.metric != "recall"].K == 0).all() and (f[f.metric != "recall"].N == 150).all()


def test_random_embeddings_give_chance_within_the_interval():
    rng = np.random.default_rng(1)
    n = 1500
    f = audit_arrays(unit(rng, n, 32), unit(rng, n, 32), np.arange(n) // 3, pools=(10, 100), ks=(1,),
                     levels=("study",), n_boot=400, random_state=0)
    for _, row in f[f.metric == "recall"].iterrows():
        assert row.chance == pytest.approx(1 / row.N)
        assert row.ci_low <= 1 / row.N <= row.ci_high, row.to_dict()


def test_identical_embeddings_are_always_linked():
    rng = np.random.default_rng(2)
    x = unit(rng, 200, 16)
    f = audit_arrays(x, x.copy(), np.arange(200) // 4, pools=(10, 100, "full"), **FAST)
    assert np.allclose(f[f.metric == "recall"].value, 1.0)
    assert np.allclose(f[f.metric == "mrr"].value, 1.0) and np.allclose(f[f.metric == "median_rank"].value, 1.0)
    rec = f[f.metric == "recall"]
    assert (rec.lift[rec.K < rec.N] > 1).all() and np.allclose(rec.lift[rec.K == rec.N], 1.0)


def test_recall_rises_with_k_and_falls_with_n():
    rng = np.random.default_rng(3)
    image = unit(rng, 400, 16)
    text = unit(rng, 400, 16) + 0.4 * image
    f = audit_arrays(image, text, np.arange(400) // 2, pools=(10, 50, 200, "full"), ks=(1, 5, 10), **FAST)
    for (d, lvl), g in _recall(f).groupby(["direction", "level"]):
        grid = g.pivot(index="N", columns="K", values="value")
        assert np.all(np.diff(grid.to_numpy(), axis=1) >= 0) and np.all(np.diff(grid.to_numpy(), axis=0) <= 0)
        assert grid.loc[10, 1] > 0.2  # the planted signal is well above chance


def test_embeddings_are_normalised_first():
    rng = np.random.default_rng(4)
    image, text = unit(rng, 120, 8), unit(rng, 120, 8) + 0.5 * unit(rng, 120, 8)
    scale = rng.uniform(0.1, 10, size=(120, 1)).astype(np.float32)
    a = audit_arrays(image, text, np.arange(120), pools=(10,), **FAST)
    b = audit_arrays(image * scale, text / scale, np.arange(120), pools=(10,), **FAST)
    pd.testing.assert_frame_equal(a, b)


def test_same_seed_same_table():
    rng = np.random.default_rng(5)
    image, text = unit(rng, 100, 8), unit(rng, 100, 8)
    a = audit_arrays(image, text, np.arange(100) // 3, pools=(10,), n_boot=100, random_state=3)
    b = audit_arrays(image, text, np.arange(100) // 3, pools=(10,), n_boot=100, random_state=3)
    c = audit_arrays(image, text, np.arange(100) // 3, pools=(10,), n_boot=100, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    # the intervals involve no random draw (relink.retrieval.intervals): another seed gives the same table
    pd.testing.assert_frame_equal(a, c)
    assert a.ci_low.notna().all()


def _labels(group, n_labels=len(CHEXPERT_LABELS)):
    labels = np.zeros((len(group), n_labels))
    for g in np.unique(group):
        labels[group == g, g % n_labels] = 1.0
    return labels


def test_hard_negative_coverage_counts_queries_that_can_fill_the_pool():
    rng = np.random.default_rng(6)
    group = np.repeat([0, 1, 2], [120, 30, 6])
    n = len(group)
    image = unit(rng, n, 8)
    f = audit_arrays(image, image + 0.3 * unit(rng, n, 8), np.arange(n), _labels(group), pools=(5, 20, 100, "full"),
                     ks=(1,), levels=("study",), negatives=("random", "pathology_matched"), **FAST)
    hard = _recall(f, negatives="pathology_matched", direction="image_to_report").set_index("N")
    assert hard.loc[5, "n_queries"] == n and hard.loc[5, "coverage"] == 1.0
    assert hard.loc[20, "n_queries"] == 150 and hard.loc[20, "coverage"] == pytest.approx(150 / n)
    assert hard.loc[100, "n_queries"] == 120
    assert n not in set(hard.index) and n in set(_recall(f, negatives="random").N)  # no full pool for hard negatives


def test_monte_carlo_rows_sit_beside_exact_ones():
    rng = np.random.default_rng(7)
    image = unit(rng, 150, 8)
    f = audit_arrays(image, image + unit(rng, 150, 8), np.arange(150), pools=(10, "full"), ks=(1, 5),
                     levels=("study",), directions=("image_to_report",), monte_carlo_pools=300, **FAST)
    mc = f[f.estimator == "monte_carlo"].set_index("K")
    ex = _recall(f, N=10).set_index("K")
    assert set(mc.N) == {10}  # the full pool has no randomness
    assert np.allclose(mc.value, ex.value, atol=0.03)


def test_pools_clip_drops_oversized_pools_and_says_which_in_the_settings():
    rng = np.random.default_rng(8)
    image, text = unit(rng, 50, 8), unit(rng, 50, 8)
    with pytest.raises(RelinkError, match="N=100 is larger than the candidate set"):
        audit_arrays(image, text, np.arange(50), pools=(10, 100), **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning with a source line: the caller says it once
        f = audit_arrays(image, text, np.arange(50), pools=(10, 100, 200, "full"), pools_clip=True, **FAST)
    assert f.attrs["audit"]["pools_dropped"] == [100, 200] and f.attrs["audit"]["pools"] == ["10", "full"]
    assert set(f.N) == {10, 50}
    assert audit_arrays(image, text, np.arange(50), pools=(10,), **FAST).attrs["audit"]["pools_dropped"] == []
    with pytest.raises(RelinkError, match=r"no pool size left to audit: every N \(100\) is larger"):
        audit_arrays(image, text, np.arange(50), pools=(100,), pools_clip=True, **FAST)


@pytest.mark.parametrize("kwargs, message", [
    (dict(pools=(5,), ks=(10,)), "K=10 exceeds the pool size N=5"),
    (dict(pools=("full",), ks=(100,)), "K=100 exceeds the pool size N=40"),
    (dict(pools=(0,)), "at least 1"),
    (dict(pools=("many",)), "neither an integer nor 'full'"),
    (dict(directions=("sideways",)), "unknown direction 'sideways'"),
    (dict(levels=("visit",)), "unknown level 'visit'"),
    (dict(negatives=("random", "hardest")), "unknown negatives 'hardest'"),
    (dict(ties="coin"), "--ties: choose one of random, pessimistic, optimistic, got 'coin'"),
    (dict(negatives=("pathology_matched",)), "hard negatives requested but every label is missing"),
    (dict(tie_tol=0), r"--tie-tol must be a finite number > 0 and <= 0.01, got 0$"),
    (dict(tie_tol=np.float64(0.0)), r"--tie-tol must be a finite number > 0 and <= 0.01, got 0.0$"),
    (dict(tie_tol=float("nan")), "--tie-tol must be a finite number > 0"),
    (dict(pools=(np.float64(2.5),)), "--pools: pool size '2.5' is neither an integer nor 'full'"),
])
def test_bad_options_are_one_clear_error(kwargs, message):
    rng = np.random.default_rng(9)
    with pytest.raises(RelinkError, match=message):
        audit_arrays(unit(rng, 40, 4), unit(rng, 40, 4), np.arange(40), **{"pools": (10,), **FAST, **kwargs})


def test_bad_arrays_name_the_row():
    rng = np.random.default_rng(10)
    image, text = unit(rng, 30, 4), unit(rng, 30, 4)
    bad = image.copy()
    bad[7, 2] = np.nan
    with pytest.raises(RelinkError, match="image.npy row 7 has non-finite values"):
        audit_arrays(bad, text, np.arange(30), pools=(10,))
    bad = text.copy()
    bad[4] = 0
    with pytest.raises(RelinkError, match="text.npy row 4 has zero norm"):
        audit_arrays(image, bad, np.arange(30), pools=(10,))
    with pytest.raises(RelinkError, match="misaligned"):
        audit_arrays(image, text[:29], np.arange(30), pools=(10,))
    with pytest.raises(RelinkError, match="row 3 has no patient_id"):
        audit_arrays(image, text, [str(i) if i != 3 else None for i in range(30)], pools=(10,))
    labels = _labels(np.arange(30) % 3)
    labels[2, 5] = 2.0
    with pytest.raises(RelinkError, match=f"row 2, column '{CHEXPERT_LABELS[5]}' holds"):
        audit_arrays(image, text, np.arange(30), labels, pools=(10,), negatives=("pathology_matched",))


def test_tie_tol_zero_is_refused_by_the_spec():
    # zero would let float rounding count a duplicate of the truth both as tied and as outranking it
    for bad in (0, 0.0, -1e-9, 0.011, float("inf")):
        with pytest.raises(RelinkError, match="--tie-tol must be a finite number > 0 and <= 0.01"):
            AuditSpec(tie_tol=bad)
    with pytest.raises(RelinkError, match="--tie-tol"):
        AuditSpec().but(tie_tol=0)
    assert AuditSpec(tie_tol=0.01).tie_tol == 0.01 and AuditSpec(tie_tol=1e-12).tie_tol == 1e-12


def _hard_case(seed=20, n=240, n_unlabelled=12):
    """Structured embeddings, three label groups of different sizes, some rows without any label."""
    rng = np.random.default_rng(seed)
    group = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    labels = _labels(group)
    unlabelled = np.zeros(n, bool)
    unlabelled[rng.choice(n, n_unlabelled, replace=False)] = True
    labels[unlabelled] = np.nan
    image = unit(rng, n, 8)
    text = image + 0.8 * unit(rng, n, 8)
    text /= np.linalg.norm(text, axis=1, keepdims=True)  # unit rows: the brute-force reference scores them as given
    return image, text, np.arange(n) // 2, labels, group, unlabelled


def test_unlabelled_rows_are_never_matched_and_lower_coverage():
    image, text, patient, labels, _, unlabelled = _hard_case()
    n = len(patient)
    kw = dict(pools=(5, 20, "full"), ks=(1, 5), negatives=("random", "pathology_matched", "positive_set_matched"),
              n_boot=0)
    f = audit_arrays(image, text, patient, labels, **kw)
    assert f.attrs["audit"]["unlabelled_rows"] == unlabelled.sum() == 12
    rand = _recall(f, negatives="random")
    assert (rand.n_queries == n).all() and n in set(rand.N)  # random pools use every row
    # Matched rows of the labelled queries are those of the set without the unlabelled rows: they are
    # never anyone's matched distractor. Their own matched pools do not exist (coverage lowered).
    keep = ~unlabelled
    g = audit_arrays(image[keep], text[keep], patient[keep], labels[keep], **kw)
    for neg in ("pathology_matched", "positive_set_matched"):
        a, b = _recall(f, negatives=neg).reset_index(drop=True), _recall(g, negatives=neg).reset_index(drop=True)
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12)
        np.testing.assert_array_equal(a.n_queries, b.n_queries)
        assert (a.coverage <= keep.mean() + 1e-12).all()
    assert g.attrs["audit"]["unlabelled_rows"] == 0
    plain = audit_arrays(image, text, patient, labels, pools=(5,), ks=(1,), n_boot=0)
    assert plain.attrs["audit"]["unlabelled_rows"] is None  # not counted when no hard negatives are audited


def _expected_recall_brute(image, text, patient, groups, N, K, direction, level):
    """Per-query random-negative Recall@K and its chance, from explicit masks and scipy; the matched pool's coverage."""
    counts = brute_counts(image, text, patient, {"pathology_matched": groups})
    above, tied, available, m = counts[(direction, level, "random")]
    assert not tied.any()
    value = hypergeom.cdf(K - 1, available, above, N - 1)
    chance = 1 - comb(N - 1, K) / comb(N - 1 + m, K)  # no truth among the first K of N - 1 + m in random order
    covered = counts[(direction, level, "pathology_matched")][2] >= N - 1
    return value, chance, covered


def test_paired_random_columns_compare_matched_rows_on_the_same_queries():
    image, text, patient, labels, group, unlabelled = _hard_case(seed=21)
    groups = np.where(unlabelled, 100 + np.arange(len(group)), group)  # no label: a group of its own
    spec = AuditSpec(pools=(5, 40), ks=(1, 5), negatives=("random", "pathology_matched"), n_boot=300, random_state=4)
    rows = pd.DataFrame({"pair_id": np.arange(len(patient)).astype(str), "patient_id": patient.astype(str)})
    for j, name in enumerate(CHEXPERT_LABELS):
        rows[name] = labels[:, j]
    es = EmbeddingSet.from_arrays(rows, image, text)
    qv = audit_queries(es, spec)
    f = summarise(qv)
    assert tuple(f.columns) == METRIC_COLUMNS + PAIRED_COLUMNS
    matched = f[f.negatives == "pathology_matched"]
    assert matched[list(PAIRED_COLUMNS)].notna().all().all()
    assert f[f.negatives == "random"][list(PAIRED_COLUMNS)].isna().all().all()
    assert matched.coverage.min() < 0.9  # N=40 leaves the small group out: the comparison needs pairing
    for _, row in matched.iterrows():
        value, chance, covered = _expected_recall_brute(image, text, patient, groups, row.N, row.K, row.direction,
                                                        row.level)
        assert covered.sum() == row.n_queries
        assert row.paired_random_value == pytest.approx(value[covered].mean(), rel=1e-9)
        assert row.paired_random_lift == pytest.approx(value[covered].mean() / chance[covered].mean(), rel=1e-9)
        # the same interval as the random column summarised over the covered queries alone
        sub = summarise(qv, rows=covered)
        twin = sub[(sub.negatives == "random") & (sub.metric == "recall") & (sub.N == row.N) & (sub.K == row.K)
                   & (sub.direction == row.direction) & (sub.level == row.level)].iloc[0]
        assert (row.paired_random_ci_low, row.paired_random_ci_high) == pytest.approx((twin.ci_low, twin.ci_high),
                                                                                      rel=1e-9)
        sub = summarise(qv, rows=covered, n_boot=0)
        twin = _recall(sub, negatives="random", direction=row.direction, level=row.level, N=row.N, K=row.K)
        assert float(twin.value.iloc[0]) == pytest.approx(row.paired_random_value, rel=1e-12)
    plain = audit_arrays(image, text, patient, pools=(5,), ks=(1,), n_boot=0)
    assert tuple(plain.columns) == METRIC_COLUMNS  # no hard negatives: no paired columns


def test_hard_negatives_alone_still_pair_with_random_pools():
    image, text, patient, labels, _, _ = _hard_case(seed=22)
    both = audit_arrays(image, text, patient, labels, pools=(5,), ks=(1,), negatives=("random", "pathology_matched"),
                        n_boot=50)
    alone = audit_arrays(image, text, patient, labels, pools=(5,), ks=(1,), negatives=("pathology_matched",), n_boot=50)
    assert set(alone.negatives) == {"pathology_matched"}
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  both[both.negatives == "pathology_matched"].reset_index(drop=True))


def test_embedding_set_audit_uses_meta_and_names_files(tmp_path):
    rng = np.random.default_rng(11)
    n = 60
    rows = pd.DataFrame({"pair_id": [f"a{i}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)],
                         "cohort": "synthetic-internal"})
    for i, name in enumerate(CHEXPERT_LABELS):
        rows[name] = (np.arange(n) % 3 == i % 3).astype(float)
    es = EmbeddingSet(rows, unit(rng, n, 8), unit(rng, n, 8), meta={"model": "relink-vit-tiny"})
    save(es, tmp_path / "emb")
    es = load(tmp_path / "emb")
    f = audit(es, pools=(10, "full"), negatives=("random", "pathology_matched", "positive_set_matched"), n_boot=50)
    assert set(f.model) == {"relink-vit-tiny"} and set(f.cohort) == {"synthetic-internal"}
    assert {"pathology_matched", "positive_set_matched"} <= set(f.negatives)
    image = np.load(tmp_path / "emb" / "image.npy")
    image[5] = 0
    np.save(tmp_path / "emb" / "image.npy", image)
    with pytest.raises(RelinkError, match=r"emb: image\.npy row 5 has zero norm"):
        audit(load(tmp_path / "emb"), pools=(10,), n_boot=0)


def test_unavailable_device_is_a_clear_error():
    import torch

    rng = np.random.default_rng(12)
    args = (unit(rng, 20, 4), unit(rng, 20, 4), np.arange(20))
    with pytest.raises(RelinkError, match="not a torch device"):
        audit_arrays(*args, pools=(10,), device="abacus")
    if not torch.cuda.is_available():
        with pytest.raises(RelinkError, match="no CUDA device"):
            audit_arrays(*args, pools=(10,), device="cuda")


def test_huge_and_tiny_rows_are_normalised_not_refused():
    rng = np.random.default_rng(13)
    image, text = unit(rng, 10, 4), unit(rng, 10, 4)
    image[2] *= 1e25  # its squared norm overflows float32
    text[3] *= 1e-9
    es = EmbeddingSet.from_arrays(pd.DataFrame({"pair_id": np.arange(10), "patient_id": np.arange(10)}), image, text)
    a, b = es.unit("image"), es.unit("text")
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6) and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-6)


def test_hard_negatives_with_only_singleton_groups_is_an_error():
    rng = np.random.default_rng(14)
    labels = np.zeros((14, 14))
    labels[np.arange(14), np.arange(14)] = 1.0  # fourteen different label vectors
    with pytest.raises(RelinkError, match="every pathology_matched group holds a single pair"):
        audit_arrays(unit(rng, 14, 4), unit(rng, 14, 4), np.arange(14), labels, pools=(5,), ks=(1,),
                     negatives=("random", "pathology_matched"), n_boot=0)
