"""The member gap measures memorisation, not split size.

The generator makes patients of 1-4 studies whose images and reports share a
patient component (a patient's studies resemble each other, so at the study
level they are strong distractors of one another). Members and non-members
are disjoint patients drawn from the same distribution; with ``memorise`` > 0
the members' reports are closer to their images than non-members' are.
"""

import numpy as np
import pandas as pd
import pytest

from helpers.brute import scores, unit
from relink.embeddings import EmbeddingSet
from relink.errors import RelinkError
from relink.utility.membership import GAP_COLUMNS, matched_samples, member_gap, own_study_counts


def cohort(n_members: int, n_non_members: int, memorise: float = 0.0, seed: int = 0, d: int = 32) -> EmbeddingSet:
    """About ``n_members`` train pairs and ``n_non_members`` test pairs, whole patients of 1-4 studies each."""
    rng = np.random.default_rng(seed)
    sides = []
    for split, target in (("train", n_members), ("test", n_non_members)):
        sizes = rng.integers(1, 5, size=int(target / 2.5) + 1)
        sizes = sizes[np.cumsum(sizes) <= target]
        sides.append((split, sizes))
    rows, image, text = [], [], []
    for split, sizes in sides:
        for p, m in enumerate(sizes):
            patient = rng.standard_normal(d) * 2.0  # what a patient's studies share: more than each study's own part
            for k in range(m):
                study = patient + rng.standard_normal(d)
                noise = 2.5 * (1 - memorise) if split == "train" else 2.5
                image.append(study + 1.2 * rng.standard_normal(d))
                text.append(study + noise * rng.standard_normal(d))
                rows.append({"pair_id": f"{split}{p}_{k}", "patient_id": f"{split}{p}", "split": split, "cohort": "gen"})
    return EmbeddingSet.from_arrays(pd.DataFrame(rows), np.asarray(image, np.float32), np.asarray(text, np.float32),
                                    meta={"model": "generator"})


@pytest.mark.parametrize("n_members, n_non_members", [(5000, 500), (500, 5000), (1500, 1500)])
def test_no_memorisation_gives_a_gap_whose_interval_holds_zero(n_members, n_non_members):
    es = cohort(n_members, n_non_members, seed=1)
    gap = member_gap(es, N=200, K=1, n_boot=1000, random_state=0).set_index("queries")
    assert tuple(gap.reset_index()[list(GAP_COLUMNS)].columns) == GAP_COLUMNS
    members, non = gap.loc["members"], gap.loc["non_members"]
    assert 0.3 < members.value < 0.95  # a real signal, far from chance (1/200)
    assert gap.loc["gap", "ci_low"] <= 0 <= gap.loc["gap", "ci_high"]
    # the two sides are alike: same pairs, patients, pool and chance
    assert members.n_queries == non.n_queries and members.n_patients == non.n_patients
    assert members.N == non.N == 200 and members.chance == non.chance == 1 / 200
    assert members.level == "study_other_patients"
    assert gap.loc["gap", "value"] == pytest.approx(members.value - non.value)
    assert gap.loc["gap", "n_queries"] == 2 * members.n_queries


def test_memorisation_gives_a_positive_gap():
    es = cohort(3000, 600, memorise=0.2, seed=2)
    gap = member_gap(es, N=200, K=1, n_boot=1000, random_state=0).set_index("queries")
    assert gap.loc["gap", "ci_low"] > 0
    assert gap.loc["members", "value"] > gap.loc["non_members", "value"] + 0.05


def test_the_gap_interval_resamples_the_two_sides_independently():
    es = cohort(800, 800, seed=3)
    gap = member_gap(es, N=50, K=1, n_boot=2000, random_state=1).set_index("queries")
    width = gap.ci_high - gap.ci_low
    # independent sides: the variances add (a shared resampling of one patient list could not apply here)
    assert width["gap"] == pytest.approx(np.hypot(width["members"], width["non_members"]), rel=0.2)
    assert gap.loc["members", "ci_low"] <= gap.loc["members", "value"] <= gap.loc["members", "ci_high"]
    again = member_gap(es, N=50, K=1, n_boot=2000, random_state=1)
    pd.testing.assert_frame_equal(gap.reset_index()[list(GAP_COLUMNS)], again)  # seeded sampling and bootstrap


def test_matched_samples_have_equal_size_and_the_same_patient_sizes():
    rng = np.random.default_rng(4)
    a = np.repeat(np.arange(300), rng.integers(1, 5, 300)).astype(str)
    b = np.repeat(np.arange(1000, 1040), rng.choice([1, 2, 6], 40)).astype(str)
    ia, ib = matched_samples(a, b, random_state=0)
    assert len(ia) == len(ib) > 0

    def histogram(ids):
        return sorted(pd.Series(ids).value_counts().value_counts().items())

    assert histogram(a[ia]) == histogram(b[ib])
    assert 6 not in dict(histogram(b[ib]))  # a size the other side lacks is left out
    for side, idx in ((a, ia), (b, ib)):  # whole patients only
        chosen = np.unique(side[idx])
        assert np.array_equal(np.sort(idx), np.flatnonzero(np.isin(side, chosen)))
    assert [x.tolist() for x in matched_samples(a, b, 0)] == [ia.tolist(), ib.tolist()]
    assert matched_samples(a, b, 1)[0].tolist() != ia.tolist()


def test_bad_splits_are_one_clear_error():
    es = cohort(200, 200, seed=5)
    with pytest.raises(RelinkError, match="member gap: the non-members split 'validate' has 0 rows"):
        member_gap(es, nonmembers="validate")
    rows = es.rows.copy()
    rows.loc[0, "split"] = "test"  # one study of a training patient among the non-members
    shared = EmbeddingSet.from_arrays(rows, es.image, es.text)
    with pytest.raises(RelinkError, match="1 patient\\(s\\) have pairs in both the 'train' and the 'test' split"):
        member_gap(shared, N=20)
    with pytest.raises(RelinkError, match="too few alike patients"):
        member_gap(cohort(4, 4, seed=6), N=20, K=5)


@pytest.mark.parametrize("direction", ["image_to_report", "report_to_image"])
def test_own_study_counts_leave_the_patients_other_studies_out(direction, monkeypatch):
    import relink.utility.membership as membership

    monkeypatch.setattr(membership, "_CELLS", 37)  # several blocks of queries
    rng = np.random.default_rng(7)
    n = 40
    image, text = unit(rng, n, 6), unit(rng, n, 6)
    text = text + 0.8 * image
    text[[5, 9, 30]] = text[4]  # duplicates: 4 and 5 share a patient (not counted), 9 and 30 do not
    image[[12, 20]] = image[11]  # 11 and 12 share a patient, 20 is another one
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    patient = np.repeat(np.arange(16), [1, 2, 3, 4] * 4)[:n]
    es = EmbeddingSet.from_arrays(pd.DataFrame({"pair_id": np.arange(n), "patient_id": patient}), image, text)
    above, tied, available = own_study_counts(es, direction)
    S = scores(image, text)
    M, C = (S, text) if direction == "image_to_report" else (S.T, image)
    for i in range(n):  # from the definition, one query at a time
        other = patient != patient[i]
        assert above[i] == (M[i, other] > M[i, i] + 1e-6).sum(), i
        assert tied[i] == np.all(C[other] == C[i], axis=1).sum(), i
        assert available[i] == other.sum(), i
    assert tied.sum() > 0


def case_mix_cohort(n_members: int, n_non_members: int, easy_members: float, easy_non_members: float,
                    seed: int = 0, d: int = 32) -> EmbeddingSet:
    """No memorisation, but a finding (Edema) that makes a pair easy to re-link, more common on one side."""
    from relink.labels import CHEXPERT_LABELS

    rng = np.random.default_rng(seed)
    rows, image, text = [], [], []
    for split, target, easy_share in (("train", n_members, easy_members), ("test", n_non_members, easy_non_members)):
        for p in range(target):
            easy = rng.random() < easy_share
            study = rng.standard_normal(d)
            image.append(study + 1.0 * rng.standard_normal(d))
            text.append(study + (1.0 if easy else 3.0) * rng.standard_normal(d))
            labels = {c: np.nan for c in CHEXPERT_LABELS}
            labels["Edema"] = 1.0 if easy else 0.0
            rows.append({"pair_id": f"{split}{p}", "patient_id": f"{split}{p}", "split": split, "cohort": "gen",
                         **labels})
    return EmbeddingSet.from_arrays(pd.DataFrame(rows), np.asarray(image, np.float32), np.asarray(text, np.float32),
                                    meta={"model": "generator"})


def test_a_case_mix_shift_without_memorisation_is_matched_away():
    es = case_mix_cohort(1500, 1500, easy_members=0.8, easy_non_members=0.2, seed=5)
    gap = member_gap(es, N=100, K=1, n_boot=1000, random_state=0)
    assert gap.attrs["matched_on"] == "studies per patient and label vector"
    row = gap.set_index("queries").loc["gap"]
    assert row.ci_low <= 0 <= row.ci_high
    # the reference: matched on size and studies per patient only (the earlier design), the shift shows as a gap
    from relink.utility import membership

    plain = membership.matched_samples
    try:
        membership.matched_samples = lambda a, b, seed=0, *_: plain(a, b, seed)
        shifted = member_gap(es, N=100, K=1, n_boot=1000, random_state=0).set_index("queries").loc["gap"]
    finally:
        membership.matched_samples = plain
    assert shifted.ci_low > 0 and shifted.value > row.value + 0.1
