"""The linear probe refuses a cohort split that puts one patient on both sides."""

import pandas as pd
import pytest

from relink.errors import RelinkError
from relink.utility.probe import probe_split


def test_cohort_split_sharing_a_patient_is_refused():
    rows = pd.DataFrame({"pair_id": [f"p{i}" for i in range(6)],
                         "patient_id": ["a", "a", "b", "c", "c", "d"],
                         "split": ["train", "test", "train", "test", "test", "train"]})
    with pytest.raises(RelinkError, match=r"1 patient\(s\) have rows in both the train and the test split"):
        probe_split(rows, "cohort")
    with pytest.raises(RelinkError, match="patient-disjoint"):
        probe_split(rows, "auto")
    used, train, test = probe_split(rows, "group", test_size=0.5, random_state=0)
    assert used == "group"
    assert not set(rows.patient_id.iloc[train]) & set(rows.patient_id.iloc[test])


def test_patient_disjoint_cohort_split_is_used_as_given():
    rows = pd.DataFrame({"pair_id": list("uvwxyz"), "patient_id": list("aabbcd"),
                         "split": ["train", "train", "test", "test", "train", "test"]})
    used, train, test = probe_split(rows, "auto")
    assert used == "cohort" and list(train) == [0, 1, 4] and list(test) == [2, 3, 5]
