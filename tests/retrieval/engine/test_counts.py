"""Blocked counts equal a brute-force masked computation, for every direction, level and grouping."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers.brute import rank_counts
from helpers.brute import brute_counts, unit


def _case(seed, n, d, n_patients, dup_fraction=0.2):
    rng = np.random.default_rng(seed)
    image = unit(rng, n, d)
    text = image + rng.normal(size=(n, d)).astype(np.float32)
    # duplicate reports (and one duplicate image) make exact ties with the truth
    text[rng.integers(0, n, size=int(n * dup_fraction))] = text[0]
    image[n - 1] = image[0]
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    patient = rng.integers(0, n_patients, size=n)
    coarse = rng.integers(0, 3, size=n)
    fine = coarse * 10 + rng.integers(0, 3, size=n)
    return image, text, patient, {"positive_set_matched": coarse, "pathology_matched": fine}


def _assert_same(got, expected):
    assert set(got) == set(expected)
    for key, (above, tied, available, size) in expected.items():
        rc = got[key]
        np.testing.assert_array_equal(rc.above, above, err_msg=f"above {key}")
        np.testing.assert_array_equal(rc.tied, tied, err_msg=f"tied {key}")
        np.testing.assert_array_equal(rc.available, available, err_msg=f"available {key}")
        np.testing.assert_array_equal(rc.truth_size, size, err_msg=f"truth_size {key}")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 70), d=st.integers(2, 8),
       block=st.integers(1, 40), tile=st.integers(1, 40), engine=st.sampled_from(["numpy", "torch"]))
def test_blocked_counts_equal_brute_force(seed, n, d, block, tile, engine):
    image, text, patient, groups = _case(seed, n, d, max(1, n // 3))
    got = rank_counts(image, text, patient, list(groups.items()), block_rows=block, tile_cols=tile, engine=engine)
    _assert_same(got, brute_counts(image, text, patient, groups))


def test_study_ties_count_duplicates_and_exclude_self():
    rng = np.random.default_rng(3)
    image, text = unit(rng, 12, 5), unit(rng, 12, 5)
    text[[3, 7, 9]] = text[2]  # three duplicates of pair 2's report
    got = rank_counts(image, text, np.arange(12), levels=("study",))
    assert got[("image_to_report", "study", "random")].tied[2] == 3
    assert got[("image_to_report", "study", "random")].tied[3] == 3
    assert got[("image_to_report", "study", "random")].tied[0] == 0


def test_one_report_per_patient_makes_patient_level_equal_study_level():
    rng = np.random.default_rng(4)
    image, text = unit(rng, 40, 6), unit(rng, 40, 6)
    got = rank_counts(image, text, np.arange(40))
    for direction in ("image_to_report", "report_to_image"):
        s, p = got[(direction, "study", "random")], got[(direction, "patient", "random")]
        np.testing.assert_array_equal(s.above, p.above)
        np.testing.assert_array_equal(s.available, p.available)


def test_order_of_rows_does_not_matter():
    image, text, patient, groups = _case(5, 50, 6, 15)
    perm = np.random.default_rng(0).permutation(50)
    a = rank_counts(image, text, patient, list(groups.items()))
    b = rank_counts(image[perm], text[perm], patient[perm], [(k, v[perm]) for k, v in groups.items()])
    for key in a:
        np.testing.assert_array_equal(a[key].above[perm], b[key].above)
        np.testing.assert_array_equal(a[key].tied[perm], b[key].tied)


def test_groupings_must_nest():
    image, text, patient, _ = _case(6, 20, 4, 5)
    a = np.arange(20) % 2
    b = np.arange(20) % 3
    with pytest.raises(ValueError, match="refine"):
        rank_counts(image, text, patient, [("positive_set_matched", a), ("pathology_matched", b)])


@pytest.mark.parametrize("block, tile", [(300, 64), (510, 2040), (7, 1000)])
def test_packed_sums_over_many_rows_and_wide_tiles(block, tile):
    # blocks over 255 rows and tiles near 2040 columns exercise the byte-lane limits of the packed sums
    image, text, patient, groups = _case(7, 600, 8, 200, dup_fraction=0.05)
    got = rank_counts(image, text, patient, list(groups.items()), block_rows=block, tile_cols=tile)
    _assert_same(got, brute_counts(image, text, patient, groups))


@pytest.mark.parametrize("patient_of", ["one_large", "all_large"])
def test_large_patients_take_the_product_path(patient_of, monkeypatch):
    import relink.retrieval.engine.patients as patients

    monkeypatch.setattr(patients, "_BATCH_CELLS", 500)  # several row chunks per large patient
    image, text, _, groups = _case(8, 150, 6, 10)
    patient = np.r_[np.zeros(100, int), np.arange(1, 51)] if patient_of == "one_large" else np.arange(150) % 2
    got = rank_counts(image, text, patient, list(groups.items()))
    _assert_same(got, brute_counts(image, text, patient, groups))


def test_outranking_needs_more_than_the_tolerance_and_ties_need_identical_embeddings():
    def unit_vec(*v):
        v = np.array(v + (0.0,) * (4 - len(v)), dtype=np.float64)
        return (v / np.linalg.norm(v)).astype(np.float32)

    image = np.stack([unit_vec(1.0), unit_vec(0, 1.0), unit_vec(0, 0, 1.0), unit_vec(0, 0, 0, 1.0)])
    text = np.stack([unit_vec(0.6, 0.8), unit_vec(0, 1.0), unit_vec(0, 0, 1.0), unit_vec(0, 0, 0, 1.0)])
    text[1] = unit_vec(0.6 + 4e-7, 0, np.sqrt(1 - (0.6 + 4e-7) ** 2))  # 4e-7 above the truth: not outranking
    text[2] = unit_vec(0.6 + 5e-6, 0, 0, np.sqrt(1 - (0.6 + 5e-6) ** 2))  # 5e-6 above: outranking
    text[3] = text[0]  # identical to the truth: a tie
    rc = rank_counts(image, text, np.arange(4), levels=("study",), directions=("image_to_report",))
    got = rc[("image_to_report", "study", "random")]
    assert got.above[0] == 1 and got.tied[0] == 1
    strict = rank_counts(image, text, np.arange(4), levels=("study",), directions=("image_to_report",), tie_tol=1e-7)
    assert strict[("image_to_report", "study", "random")].above[0] == 2
